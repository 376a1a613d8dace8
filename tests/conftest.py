from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modalfuse.mappings.schema import ResolvedSchema
from modalfuse.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
HAS_EXPORT = (
    importlib.util.find_spec("torch") is not None
    and importlib.util.find_spec("transformers") is not None
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_EXPORT:
        return
    skip = pytest.mark.skip(
        reason="export extra not installed (pip install '.[export]'): torch/transformers missing"
    )
    for item in items:
        if "needs_export" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("modalfuse-data"), intra_op_threads=2)


@pytest.fixture(scope="session")
def sample_products() -> list[dict[str, str]]:
    import json

    return [
        json.loads(line)
        for line in (SAMPLE / "products.jsonl").read_text(encoding="utf-8").splitlines()
    ]


@pytest.fixture(scope="session")
def minilm_fp32(settings: Settings) -> Path:
    from modalfuse.onnx_models.export import export_encoder

    return export_encoder(settings=settings)


@pytest.fixture(scope="session")
def minilm_int8(settings: Settings, minilm_fp32: Path) -> Path:
    from modalfuse.onnx_models.export import export_encoder

    return export_encoder(settings=settings, quantize=True)


@pytest.fixture(scope="session")
def tiny_clip_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_clip(settings: Settings, tiny_clip_source: Path) -> Path:
    from modalfuse.onnx_models.export import export_encoder

    return export_encoder(str(tiny_clip_source), kind="clip", settings=settings)


@pytest.fixture(scope="session")
def resolved_products() -> ResolvedSchema:
    """The default product schema with MiniLM's 384-d text and a 512-d image encoder."""
    from modalfuse.mappings.schema import load_schema, resolve

    return resolve(load_schema(), {"text": 384, "image": 512})


@pytest.fixture(scope="session")
def osmem_server() -> Iterator[Any]:
    """An in-memory OpenSearch-compatible server on a free loopback port (overrides the plugin's
    fixture so a platform without the bundled binary skips instead of erroring)."""
    try:
        from osmem_server import OsmemError, OsmemServer
    except ImportError:
        pytest.skip("osmem-server is not installed (pip install '.[dev]')")
    try:
        server = OsmemServer.start(freeze=True)
    except OsmemError as e:
        pytest.skip(f"osmem-server cannot start here: {e}")
    yield server
    server.close()


@pytest.fixture(scope="session")
def catalogue() -> list[tuple[str, dict[str, Any]]]:
    """The bundled sample catalogue as (id, default-schema fields)."""
    from modalfuse.sample import load_catalogue

    return load_catalogue()
