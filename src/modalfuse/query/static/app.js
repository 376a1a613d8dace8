// The modalfuse search page: one query box, an optional photo, a retriever toggle and filters.
// Everything goes through POST /search; images come from /images/{id}; filter menus from /facets.
"use strict";

const params = new URLSearchParams(location.search);
const INDEX = params.get("index") || null;
const $ = (sel) => document.querySelector(sel);
const form = $("#search-form");
const status = $("#status");
const results = $("#results");
const timings = $("#timings");
let photo = null; // a Blob: an uploaded file, or a product image for "more like this"
let photoName = "";

function setStatus(text, kind) {
  status.textContent = text;
  status.className = kind || "";
}

function indexParam() {
  return INDEX ? `?index=${encodeURIComponent(INDEX)}` : "";
}

async function loadFacets() {
  const fields = [...document.querySelectorAll("#filters select")].map((s) => s.dataset.field);
  const query = new URLSearchParams(INDEX ? { index: INDEX } : {});
  fields.forEach((f) => query.append("field", f));
  try {
    const response = await fetch(`/facets?${query}`);
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.statusText);
    for (const select of document.querySelectorAll("#filters select")) {
      for (const { value, count } of body.facets[select.dataset.field] || []) {
        const option = document.createElement("option");
        option.value = value;
        option.textContent = `${value} (${count})`;
        select.append(option);
      }
    }
  } catch (error) {
    setStatus(`filters unavailable: ${error.message}`, "error");
  }
}

// The retriever table comes from the server (GET /retrievers), so the page never names them.
let SPECS = [];
const specsReady = loadRetrievers();
async function loadRetrievers() {
  try {
    const response = await fetch("/retrievers");
    if (response.ok) SPECS = await response.json();
  } catch {
    SPECS = [];
  }
}

function retrievers(mode, hasText, hasPhoto) {
  const names = (keep) => SPECS.filter(keep).map((s) => s.name);
  if (mode === "lexical") return names((s) => s.vector_role === null);
  if (mode === "vector") return names((s) => s.vector_role === "text");
  if (mode === "image") {
    const onImages = (s) => s.vector_role === "image";
    const chosen = names(
      (s) => onImages(s) && ((s.needs === "image" && hasPhoto) || (s.needs === "text" && hasText)),
    );
    return chosen.length ? chosen : names((s) => onImages(s) && s.needs === "text");
  }
  return null; // hybrid: every retriever the query and the index allow
}

function buildRequest() {
  const text = $("#q").value.trim();
  const mode = document.querySelector('input[name="mode"]:checked').value;
  const request = { text: text || null, size: 24, window: 100, explain: true };
  if (INDEX) request.index = INDEX;
  const chosen = retrievers(mode, Boolean(text), Boolean(photo));
  if (chosen) request.retrievers = chosen;
  request.filters = [...document.querySelectorAll("#filters select")]
    .filter((s) => s.value)
    .map((s) => ({ field: s.dataset.field, op: "term", value: s.value }));
  if ($("#group-variants").checked) request.collapse = { field: "style", inner: 3 };
  if ($("#diversify").checked) request.diversify = { lambda: 0.7, on: "text_vector" };
  return request;
}

async function search() {
  await specsReady;
  const request = buildRequest();
  if (!request.text && !photo) {
    setStatus("Type a query or choose a photo to search.", "empty");
    results.replaceChildren();
    timings.textContent = "";
    return;
  }
  setStatus("searching...");
  let response;
  try {
    if (photo) {
      const data = new FormData();
      data.append("request", JSON.stringify(request));
      data.append("image", photo, photoName || "photo");
      response = await fetch("/search", { method: "POST", body: data });
    } else {
      response = await fetch("/search", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(request),
      });
    }
  } catch (error) {
    showError(`the server cannot be reached (${error.message})`);
    return;
  }
  let body;
  try {
    body = await response.json();
  } catch {
    showError(`the server answered ${response.status} without JSON`);
    return;
  }
  if (!response.ok) {
    const where = body.field ? ` (${body.field})` : "";
    showError(`${body.error || response.status}: ${body.detail || "search failed"}${where}`);
    return;
  }
  render(body);
}

function showError(message) {
  results.replaceChildren();
  timings.textContent = "";
  setStatus(`Search failed. ${message}`, "error");
}

function render(body) {
  results.replaceChildren();
  const stages = Object.entries(body.timings_ms)
    .map(([stage, ms]) => `${stage} ${ms.toFixed(1)} ms`)
    .join(" · ");
  timings.textContent = `${body.retrievers.join(" + ")} (${body.fusion}) · ${stages}`;
  const warnings = body.warnings.length ? ` Note: ${body.warnings.join("; ")}` : "";
  if (!body.hits.length) {
    setStatus(`No products match this query and these filters.${warnings}`, "empty");
    return;
  }
  const counted = body.total_counts === "groups" ? "groups" : "candidates";
  const rules = body.rules.length ? ` Rules: ${body.rules.join(", ")}.` : "";
  setStatus(`${body.hits.length} of ${body.total} ${counted}.${rules}${warnings}`);
  const template = $("#card-template");
  for (const hit of body.hits) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.id = hit.id;
    const image = card.querySelector(".thumb");
    image.src = `/images/${encodeURIComponent(hit.id)}${indexParam()}`;
    image.alt = hit.fields.title || hit.id;
    card.querySelector(".title").textContent = hit.fields.title || `(untitled ${hit.id})`;
    card.querySelector(".score").textContent = `score ${hit.score.toFixed(4)}`;
    if (hit.pinned !== null && hit.pinned !== undefined) {
      card.classList.add("is-pinned");
      card.querySelector(".pinned").hidden = false;
      card.querySelector(".pinned").title = `pinned at ${hit.pinned} by ${hit.ranking ? hit.ranking.pinned_by : "a rule"}`;
    }
    if (hit.variants && hit.variants.length) {
      const strip = card.querySelector(".variants");
      strip.hidden = false;
      strip.dataset.group = hit.group || "";
      for (const variant of hit.variants) {
        const thumb = document.createElement("img");
        thumb.src = `/images/${encodeURIComponent(variant.id)}${indexParam()}`;
        thumb.alt = variant.fields.title || variant.id;
        thumb.title = variant.fields.colour || variant.id;
        thumb.className = "variant";
        strip.append(thumb);
      }
      const size = hit.ranking ? hit.ranking.group_size : hit.variants.length + 1;
      strip.append(` ${size} in this style`);
    }
    card.querySelector(".tags").textContent = [hit.fields.gender, hit.fields.colour, hit.fields.category]
      .filter(Boolean)
      .join(" · ");
    for (const [field, value] of Object.entries(hit.fields)) {
      if (typeof value === "string") card.dataset[`f${field}`] = value;
    }
    card.querySelector(".explain").append(explainTable(hit));
    card.querySelector(".why").addEventListener("click", () => {
      const popover = card.querySelector(".explain");
      document.querySelectorAll(".explain").forEach((p) => p !== popover && (p.hidden = true));
      popover.hidden = !popover.hidden;
      if (!popover.hidden) keepInView(popover);
    });
    card.querySelector(".more").addEventListener("click", () => moreLikeThis(hit));
    results.append(card);
  }
}

// The popover is wider than a card; cards in the last column would push it off the page.
function keepInView(popover) {
  popover.style.left = "";
  const overflow = popover.getBoundingClientRect().right - (document.documentElement.clientWidth - 8);
  if (overflow > 0) popover.style.left = `${8 - overflow}px`;
}

function explainTable(hit) {
  const table = document.createElement("table");
  table.innerHTML = "<thead><tr><th>retriever</th><th>rank</th><th>raw</th><th>share</th></tr></thead>";
  const rows = document.createElement("tbody");
  for (const [name, part] of Object.entries(hit.explain || {})) {
    const row = document.createElement("tr");
    row.className = "part";
    row.dataset.retriever = name;
    for (const text of [name, `#${part.rank}`, part.raw_score.toFixed(3), part.contribution.toFixed(4)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const bar = document.createElement("tr");
    const cell = document.createElement("td");
    cell.colSpan = 4;
    const fill = document.createElement("div");
    fill.className = "bar";
    const fused = hit.ranking ? hit.ranking.relevance : hit.score;
    fill.style.width = `${Math.round((100 * part.contribution) / (fused || 1))}%`;
    cell.append(fill);
    bar.append(cell);
    rows.append(row, bar);
  }
  const total = document.createElement("tr");
  total.innerHTML = "<th>fused</th><td></td><td></td>";
  const sum = document.createElement("th");
  sum.textContent = (hit.ranking ? hit.ranking.relevance : hit.score).toFixed(4);
  total.append(sum);
  rows.append(total);
  for (const part of hit.ranking ? hit.ranking.boosts : []) {
    const row = document.createElement("tr");
    row.className = "boost";
    for (const text of [part.boost, `f ${part.factor.toFixed(2)}`, `w ${part.weight}`, `+${part.term.toFixed(3)}`]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    rows.append(row);
  }
  if (hit.ranking) {
    const final = document.createElement("tr");
    final.innerHTML = `<th>final</th><td colspan="2">x${hit.ranking.multiplier.toFixed(3)}</td>`;
    const value = document.createElement("th");
    value.textContent = hit.score.toFixed(4);
    final.append(value);
    rows.append(final);
  }
  table.append(rows);
  return table;
}

async function moreLikeThis(hit) {
  const response = await fetch(`/images/${encodeURIComponent(hit.id)}${indexParam()}`);
  if (!response.ok) {
    showError(`product ${hit.id} has no image to search with`);
    return;
  }
  setPhoto(await response.blob(), `like ${hit.fields.title || hit.id}`);
  $("#q").value = "";
  document.querySelector('input[name="mode"][value="image"]').checked = true;
  search();
}

function setPhoto(blob, name) {
  photo = blob;
  photoName = name;
  if (!blob) {
    $("#photo-chip").hidden = true;
    $("#image").value = "";
    return;
  }
  $("#photo-preview").src = URL.createObjectURL(blob);
  $("#photo-name").textContent = name;
  $("#photo-chip").hidden = false;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  search();
});
$("#image").addEventListener("change", () => {
  const file = $("#image").files[0];
  setPhoto(file || null, file ? file.name : "");
  if (file) search();
});
$("#photo-clear").addEventListener("click", () => setPhoto(null));
document.querySelectorAll('input[name="mode"], #filters select, #ranking input').forEach((el) =>
  el.addEventListener("change", () => ($("#q").value.trim() || photo) && search()),
);
loadFacets();
if (params.get("q")) {
  $("#q").value = params.get("q");
  search();
}
