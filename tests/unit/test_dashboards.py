"""The Dashboards saved objects: well-formed NDJSON in Dashboards' export format, references that
resolve inside the file, fields that exist in the mappings they chart, and the import request."""

from __future__ import annotations

import importlib.resources
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from modalfuse.errors import ConfigError
from modalfuse.mappings import opensearch as os_mappings
from modalfuse.mappings.dashboards import (
    import_saved_objects,
    saved_objects,
    to_ndjson,
)
from modalfuse.mappings.querylog import QUERY_LOG
from modalfuse.mappings.schema import ResolvedSchema
from modalfuse.settings import Settings

NDJSON = Path(str(importlib.resources.files("modalfuse.mappings") / "dashboards.ndjson"))
TYPES = {"index-pattern", "search", "visualization", "dashboard"}


def _objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in NDJSON.read_text().splitlines()]


def test_shipped_file_is_what_the_builder_writes() -> None:
    assert NDJSON.read_text() == to_ndjson(saved_objects("products"))


def test_objects_have_the_saved_object_shape() -> None:
    objects = _objects()
    assert len({o["id"] for o in objects}) == len(objects)
    for o in objects:
        assert set(o) >= {"type", "id", "attributes", "references"}, o
        assert o["type"] in TYPES and o["attributes"]["title"]
        for ref in o["references"]:
            assert set(ref) == {"id", "name", "type"}
        meta = o["attributes"].get("kibanaSavedObjectMeta")
        if meta is not None:
            source = json.loads(meta["searchSourceJSON"])
            assert source["query"]["language"] == "kuery"
            if "indexRefName" in source:
                assert source["indexRefName"] in {r["name"] for r in o["references"]}
        if o["type"] == "visualization":
            vis = json.loads(o["attributes"]["visState"])
            assert vis["title"] == o["attributes"]["title"] and vis["aggs"] and vis["type"]
            assert {a["schema"] for a in vis["aggs"]} & {"metric"}
        if o["type"] == "dashboard":
            panels = json.loads(o["attributes"]["panelsJSON"])
            names = {r["name"] for r in o["references"]}
            assert panels and all(p["panelRefName"] in names for p in panels)


def test_every_reference_resolves_inside_the_file() -> None:
    objects = _objects()
    known = {(o["type"], o["id"]) for o in objects}
    for o in objects:
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in known, (o["attributes"]["title"], ref)
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    charted = {r["id"] for r in dashboard["references"]}
    assert charted == {o["id"] for o in objects if o["type"] in ("visualization", "search")}


def _mapped_fields(mapping: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, spec in mapping.get("properties", {}).items():
        out.add(prefix + name)
        out |= {f"{prefix}{name}.{sub}" for sub in spec.get("fields", {})}
        out |= _mapped_fields(spec, f"{prefix}{name}.")
    return out


def _used_fields(o: dict[str, Any]) -> set[str]:
    attrs = o["attributes"]
    used: set[str] = set()
    if o["type"] == "index-pattern":
        used.add(attrs["timeFieldName"])
    if o["type"] == "search":
        used |= set(attrs["columns"]) | {s[0] for s in attrs["sort"]}
    if o["type"] == "visualization":
        vis = json.loads(attrs["visState"])
        used |= {a["params"]["field"] for a in vis["aggs"] if "field" in a["params"]}
    meta = attrs.get("kibanaSavedObjectMeta")
    if meta:
        query = json.loads(meta["searchSourceJSON"])["query"]["query"]
        used |= {part.split(":")[0].strip() for part in query.split(" and ") if ":" in part}
    return used


def test_charted_fields_exist_in_the_index_mappings(resolved_products: ResolvedSchema) -> None:
    mappings = {
        "products": _mapped_fields(os_mappings.mappings(resolved_products)),
        QUERY_LOG: _mapped_fields(os_mappings.QUERY_LOG_MAPPING),
        "products-deadletter": _mapped_fields(os_mappings.DEAD_LETTER_MAPPING),
    }
    objects = {o["id"]: o for o in _objects()}
    for o in objects.values():
        if o["type"] == "dashboard":
            continue
        if o["type"] == "index-pattern":
            pattern = o["attributes"]["title"]
        else:
            ref = next(r for r in o["references"] if r["type"] == "index-pattern")
            pattern = objects[ref["id"]]["attributes"]["title"]
        missing = _used_fields(o) - mappings[pattern]
        assert not missing, (o["attributes"]["title"], missing)
    assert "latency_ms.retrieve" in mappings[QUERY_LOG]


def test_alias_renames_every_pattern() -> None:
    titles = {
        o["attributes"]["title"] for o in saved_objects("shop") if o["type"] == "index-pattern"
    }
    assert titles == {"shop", "shop-deadletter", QUERY_LOG}


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []
    answer: ClassVar[tuple[int, dict[str, Any]]] = (200, {"success": True, "successCount": 12})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, payload = self.answer
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def dashboards_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_import_posts_multipart_with_the_xsrf_header(dashboards_server: str) -> None:
    settings = Settings(opensearch_user="admin", opensearch_password="pw")  # type: ignore[arg-type]
    ndjson = to_ndjson(saved_objects())
    result = import_saved_objects(dashboards_server + "/", ndjson, settings=settings)
    assert result == {"success": True, "successCount": 12}
    request = _Recorder.seen[0]
    assert request["path"] == "/api/saved_objects/_import?overwrite=true"
    assert request["headers"]["osd-xsrf"] == "true"
    assert request["headers"]["Authorization"].startswith("Basic ")
    assert request["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="modalfuse.ndjson"' in request["body"]
    assert ndjson.encode() in request["body"]


def test_import_refusal_is_a_clear_error(dashboards_server: str) -> None:
    _Recorder.answer = (200, {"success": False, "errors": [{"id": "x", "error": "conflict"}]})
    try:
        with pytest.raises(ConfigError, match=r"Dashboards refused the import.*conflict"):
            import_saved_objects(dashboards_server, "{}\n", settings=Settings())
    finally:
        _Recorder.answer = (200, {"success": True, "successCount": 12})
