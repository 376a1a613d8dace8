"""The search page in a real browser (headless Chromium driven by Playwright) against a real
`modalfuse serve` on the embedded engine with the bundled encoders: results are pictures that
load, explain opens, search by photo works, filters hold, and a bad upload says what happened.
A screenshot is kept in artifacts/."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modalfuse.engines.lancedb import LanceDBEngine
from modalfuse.ingest.pipeline import Pipeline
from modalfuse.mappings.schema import load_schema, parse_schema, resolve
from modalfuse.onnx_models.registry import encoder_dims
from modalfuse.sample import SAMPLE_DIR
from modalfuse.settings import Settings
from tests.integration.browser_support import launched

pytestmark = [pytest.mark.needs_export, pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
DOCS = 500


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    minilm_fp32: Path,
    catalogue: list[tuple[str, dict[str, Any]]],
) -> Iterator[str]:
    import uvicorn

    from modalfuse.query.api import create_api

    s = Settings(
        data_dir=tmp_path_factory.mktemp("page"),
        model_cache_dir=settings.models_dir,
        index="pshop",
        image_roots=[SAMPLE_DIR],
        intra_op_threads=1,
        query_log=False,
    )
    engine = LanceDBEngine(s)
    engine.create(
        resolve(parse_schema(load_schema().model_dump() | {"name": "pshop"}), encoder_dims(s))
    )
    messages = [
        {
            "op": "upsert",
            "index": "pshop",
            "id": doc_id,
            "version": 1,
            "fields": fields | {"image": str(SAMPLE_DIR / fields["image"])},
        }
        for doc_id, fields in catalogue[:DOCS]
    ]
    outcome = Pipeline(s, engine=engine).process(messages)
    assert len(outcome.written) == DOCS and not outcome.dead, outcome.summary()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_api(s), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started, "the API did not start"
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched() as b:
        yield b


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server + "/")
    pg.wait_for_function("document.querySelectorAll('#f-gender option').length > 1")
    yield pg
    context.close()
    assert not errors, errors


def _search(page: Any, text: str) -> None:
    page.fill("#q", text)
    page.click("#search")
    page.wait_for_selector("#results .card")


def _loaded_widths(page: Any) -> list[int]:
    page.wait_for_function(
        "[...document.querySelectorAll('#results .thumb')].slice(0, 6).every(i => i.complete)"
    )
    widths: list[int] = page.eval_on_selector_all(
        "#results .thumb", "imgs => imgs.slice(0, 6).map(i => i.naturalWidth)"
    )
    return widths


def test_query_shows_product_images_and_explain(page: Any) -> None:
    _search(page, "red dress")
    widths = _loaded_widths(page)
    assert len(widths) == 6 and all(w > 0 for w in widths), widths
    titles = page.eval_on_selector_all("#results .title", "els => els.map(e => e.textContent)")
    assert any("dress" in t.lower() for t in titles[:5]), titles[:5]
    assert "lexical" in page.inner_text("#timings") and "ms" in page.inner_text("#timings")
    card = page.locator("#results .card").first
    card.locator(".why").click()
    explain = card.locator(".explain")
    assert explain.is_visible()
    parts = explain.locator("tr.part")
    assert parts.count() >= 1
    names = {parts.nth(i).get_attribute("data-retriever") for i in range(parts.count())}
    assert names <= {"lexical", "text_vector", "text_to_image"} and names
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search-page.png"), full_page=False)


def test_search_by_uploaded_photo(page: Any) -> None:
    photo = next(iter(sorted((SAMPLE_DIR / "images").glob("*.jpg"))))
    page.set_input_files("#image", str(photo))
    page.wait_for_selector("#results .card")
    assert "image" in page.inner_text("#timings")
    assert all(w > 0 for w in _loaded_widths(page))


def test_more_like_this_searches_by_that_products_image(page: Any) -> None:
    _search(page, "black watch")
    first_title = page.locator("#results .title").first.inner_text()
    page.locator("#results .card .more").first.click()
    page.wait_for_function("document.querySelector('#photo-name').textContent.startsWith('like')")
    page.wait_for_function("document.querySelector('#timings').textContent.includes('image')")
    assert page.input_value("#q") == ""
    assert first_title in page.inner_text("#photo-name")


def test_filter_holds_for_every_result(page: Any) -> None:
    page.select_option("#f-gender", "Women")
    _search(page, "shoes")
    page.wait_for_function(
        "[...document.querySelectorAll('#results .card')].every(c => c.dataset.fgender)"
    )
    genders = page.eval_on_selector_all(
        "#results .card", "cards => cards.map(c => c.dataset.fgender)"
    )
    assert genders and set(genders) == {"Women"}


def test_bad_upload_shows_an_error(page: Any, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("this is not a picture")
    page.set_input_files("#image", str(bogus))
    page.wait_for_selector("#status.error")
    message = page.inner_text("#status")
    assert "InvalidImage" in message and "image" in message
    assert page.locator("#results .card").count() == 0


def test_empty_query_and_empty_results_say_so(page: Any) -> None:
    page.click("#search")
    assert "Type a query" in page.inner_text("#status")
    page.check('input[name="mode"][value="lexical"]')
    page.fill("#q", "zzzqqqxylophone")
    page.click("#search")
    page.wait_for_function("document.querySelector('#status').textContent !== 'searching...'")
    assert "No products match" in page.inner_text("#status")
    assert page.locator("#results .card").count() == 0


def test_pinned_hits_are_marked_and_variants_grouped(page: Any, server: str) -> None:
    import httpx

    rule = {"id": "page-pin", "query": "black watch", "pin": [{"id": "1579", "position": 1}]}
    assert httpx.post(f"{server}/rules?index=pshop", json=rule).status_code == 201
    try:
        page.reload()
        page.wait_for_function("document.querySelectorAll('#f-gender option').length > 1")
        _search(page, "black watch")
        first = page.locator("#results .card").first
        assert first.get_attribute("data-id") == "1579"
        assert first.locator(".pinned").is_visible()
        assert "page-pin" in page.inner_text("#status")
        page.check("#group-variants")
        _search(page, "men striped shirt")
        page.wait_for_function("document.querySelector('#status').textContent.includes('groups')")
        groups = page.eval_on_selector_all(
            "#results .card .variants:not([hidden])", "els => els.map(e => e.dataset.group)"
        )
        assert groups and len(groups) == len(set(groups)), groups
        strip = page.locator("#results .card .variants:not([hidden])").first
        assert strip.locator("img.variant").count() >= 1
        assert "in this style" in strip.inner_text()
    finally:
        httpx.delete(f"{server}/rules/page-pin?index=pshop")
