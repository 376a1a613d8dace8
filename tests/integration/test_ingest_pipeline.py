"""The ingest pipeline in-process against real HTTP servers: what URL fetching does with hostile
or slow servers. (The worker-level tests cover the same pipeline through the queue.)"""

from __future__ import annotations

import contextlib
import http.server
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from modalfuse.engines.lancedb import LanceDBEngine
from modalfuse.ingest.pipeline import Pipeline
from modalfuse.settings import Settings
from tests.integration.ingest_support import create_index

pytestmark = [pytest.mark.needs_export]


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 30), (0, 90, 200)).save(buf, format="JPEG")
    return buf.getvalue()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ok.jpg":
            self._send(200, "image/jpeg", jpeg())
        elif self.path == "/page.jpg":
            self._send(200, "image/jpeg", b"<!doctype html><html><body>Not Found</body></html>")
        elif self.path == "/slow.jpg":
            time.sleep(2)
            self._send(200, "image/jpeg", jpeg())
        elif self.path == "/loop.jpg":
            self.send_response(302)
            self.send_header("Location", "/loop.jpg")
            self.end_headers()
        elif self.path == "/busy.jpg":
            self._send(503, "text/plain", b"busy")
        else:
            self._send(404, "text/plain", b"no")

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # The slow response outlives the client's read timeout: its write may find no reader.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def pipeline(tmp_path: Path, settings: Settings, minilm_fp32: Path) -> Pipeline:
    from modalfuse.onnx_models.manifest import read_manifest
    from modalfuse.onnx_models.registry import image_encoder_dir

    s = Settings(
        data_dir=tmp_path,
        model_cache_dir=settings.models_dir,
        # The test server is on loopback, which is refused by default.
        image_allow_private_addresses=True,
        image_read_timeout_s=0.5,
        intra_op_threads=1,
    )
    image_dir = image_encoder_dir(s)  # the bundled aligned encoder: ONNX, no export
    assert image_dir is not None
    create_index(s, "web", {"text": 384, "image": read_manifest(image_dir).dim})
    return Pipeline(s)


def msg(doc_id: str, image: str) -> dict[str, object]:
    return {
        "index": "web",
        "id": doc_id,
        "version": 1,
        "fields": {"title": f"item {doc_id}", "image": image},
    }


def test_url_outcomes(pipeline: Pipeline, server: str) -> None:
    items = [
        msg("ok", f"{server}/ok.jpg"),
        msg("html", f"{server}/page.jpg"),
        msg("missing", f"{server}/nope.jpg"),
        msg("loop", f"{server}/loop.jpg"),
        msg("slow", f"{server}/slow.jpg"),
        msg("busy", f"{server}/busy.jpg"),
    ]
    out = pipeline.process(items)
    assert out.written == ["ok"]
    dead = {d.doc_id: d for d in out.dead}
    assert set(dead) == {"html", "missing", "loop"}
    assert dead["html"].error_type == "InvalidImage" and dead["html"].field == "fields.image"
    assert "answered 404" in dead["missing"].reason
    assert "more than 3 redirects" in dead["loop"].reason
    # Timeouts and 5xx are transient: retried (then dead-lettered when retries run out).
    retried = {r.item["id"]: r.reason for r in out.retry}
    assert set(retried) == {"slow", "busy"}
    assert "timed out" in retried["slow"] and "answered 503" in retried["busy"]
    engine = pipeline.engine
    assert isinstance(engine, LanceDBEngine)
    stored = engine.knn("web", _vector_query(engine))
    assert [h.id for h in stored] == ["ok"]


def _vector_query(engine: LanceDBEngine):  # type: ignore[no-untyped-def]
    from modalfuse.engines.base import KnnQuery

    dim = engine.schema_of("web").vectors["image_vector"].dim
    return KnnQuery(field="image_vector", vector=[1.0 / dim**0.5] * dim, k=5)


def test_private_addresses_refused_by_default(
    tmp_path: Path, pipeline: Pipeline, server: str
) -> None:
    strict = Pipeline(pipeline.settings.model_copy(update={"image_allow_private_addresses": False}))
    out = strict.process([msg("ok", f"{server}/ok.jpg")])
    assert out.written == [] and "non-public address (127.0.0.1)" in out.dead[0].reason
