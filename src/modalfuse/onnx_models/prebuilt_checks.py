"""The graph work and checks behind `prebuilt.install`: the pooling appended to a source graph,
and validation without a PyTorch reference (see `prebuilt`'s docstring for what is checked)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modalfuse.errors import ExportValidationError
from modalfuse.onnx_models.manifest import GraphValidation, Tolerance
from modalfuse.onnx_models.optimize import quantize_int8

if TYPE_CHECKING:
    from modalfuse.onnx_models.prebuilt import MavenModel

# Stated tolerances: the fused, pooled graph against NumPy pooling of the source graph, as tight
# as our exports against PyTorch (kernel rounding only); int8 trades accuracy for speed and must
# keep this cosine to fp32 on every validation text (as our own int8 exports must).
POOLING_TOLERANCE = Tolerance(max_abs_diff=1e-4, min_cosine=0.9999)
INT8_MIN_COSINE = 0.96
NORM_TOLERANCE = 1e-4


def append_pooling(source: Path, target: Path, pooling: str) -> None:
    """The source graph with `embedding` = pooled `last_hidden_state` appended as its output."""
    import onnx
    from onnx import TensorProto, helper

    graph_model = onnx.load(str(source))
    graph = graph_model.graph
    hidden = graph.output[0].name
    opset = next(o.version for o in graph_model.opset_import if o.domain in ("", "ai.onnx"))
    nodes = []
    if pooling == "cls":
        graph.initializer.append(helper.make_tensor("pool_index", TensorProto.INT64, [], [0]))
        nodes.append(helper.make_node("Gather", [hidden, "pool_index"], ["embedding"], axis=1))
    else:  # mean over the tokens the attention mask keeps
        axes = helper.make_tensor("pool_axes", TensorProto.INT64, [1], [1])
        last = helper.make_tensor("pool_last", TensorProto.INT64, [1], [-1])
        nodes.append(helper.make_node("Cast", ["attention_mask"], ["pool_mask"], to=1))
        if opset >= 13:
            graph.initializer.extend([axes, last])
            nodes.append(helper.make_node("Unsqueeze", ["pool_mask", "pool_last"], ["pool_m3"]))
        else:
            nodes.append(helper.make_node("Unsqueeze", ["pool_mask"], ["pool_m3"], axes=[-1]))
        nodes.append(helper.make_node("Mul", [hidden, "pool_m3"], ["pool_masked"]))
        if opset >= 13:
            nodes.append(helper.make_node("ReduceSum", ["pool_masked", "pool_axes"], ["pool_sum"]))
            nodes.append(helper.make_node("ReduceSum", ["pool_m3", "pool_axes"], ["pool_count"]))
        else:
            nodes.append(
                helper.make_node("ReduceSum", ["pool_masked"], ["pool_sum"], axes=[1], keepdims=0)
            )
            nodes.append(
                helper.make_node("ReduceSum", ["pool_m3"], ["pool_count"], axes=[1], keepdims=0)
            )
        graph.initializer.append(helper.make_tensor("pool_eps", TensorProto.FLOAT, [], [1e-9]))
        nodes.append(helper.make_node("Max", ["pool_count", "pool_eps"], ["pool_safe"]))
        nodes.append(helper.make_node("Div", ["pool_sum", "pool_safe"], ["embedding"]))
    graph.node.extend(nodes)
    dim = graph.output[0].type.tensor_type.shape.dim[2].dim_value
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch_size", dim])
    )
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(target))


def _feeds(tokenizer: Any, texts: list[str], max_len: int, inputs: set[str]) -> dict[str, Any]:
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_len)
    encodings = tokenizer.encode_batch(texts)
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, enc in enumerate(encodings):
        ids[row, : len(enc.ids)] = enc.ids
        mask[row, : len(enc.ids)] = 1
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in inputs:
        feeds["token_type_ids"] = np.zeros_like(ids)
    return feeds


def _unit(x: Any) -> Any:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def validate(
    model: MavenModel, source: Path, pooled: Path, tokenizer_file: Path, texts: list[str]
) -> tuple[GraphValidation, dict[str, float], Any]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    raw = ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"])
    ours = ort.InferenceSession(str(pooled), opts, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in raw.get_inputs()}
    feeds = _feeds(tokenizer, texts, model.max_seq_length, inputs)
    (hidden,) = raw.run(None, feeds)
    mask = feeds["attention_mask"][..., None].astype(np.float32)
    cls = model.pooling == "cls"
    expected = hidden[:, 0] if cls else (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
    (embedding,) = ours.run(None, feeds)
    diff = float(np.abs(embedding - expected).max())
    cosines = (_unit(embedding) * _unit(expected)).sum(1)
    figures = GraphValidation(
        inputs=len(texts),
        max_abs_diff=diff,
        min_cosine=float(cosines.min()),
        mean_cosine=float(cosines.mean()),
    )
    unit = _unit(embedding)
    norms = np.linalg.norm(unit, axis=1)
    pair_texts = [t for pair in model.pairs for t in pair]
    (paired,) = ours.run(None, _feeds(tokenizer, pair_texts, model.max_seq_length, inputs))
    paired = _unit(paired).reshape(len(model.pairs), 3, -1)
    para = (paired[:, 0] * paired[:, 1]).sum(1)
    unrelated = (paired[:, 0] * paired[:, 2]).sum(1)
    # Round trip: every word of mixed-script text comes back (as the normaliser folds it).
    trips = [tokenizer.decode(tokenizer.encode(t).ids) for t in model.round_trip]
    expected_trips = [
        tokenizer.normalizer.normalize_str(t) if tokenizer.normalizer else t
        for t in model.round_trip
    ]
    checks = {
        "unit_norm_max_error": float(np.abs(norms - 1).max()),
        "paraphrase_min_cosine": float(para.min()),
        "unrelated_max_cosine": float(unrelated.max()),
        "paraphrase_margin": float((para - unrelated).min()),
        "tokenizer_round_trips": float(
            sum(
                t.replace(" ", "") == o.replace(" ", "")
                for t, o in zip(trips, expected_trips, strict=True)
            )
        ),
    }
    if checks["unit_norm_max_error"] > NORM_TOLERANCE:
        raise ExportValidationError(f"{model.name}: embeddings are not unit-norm: {checks}")
    if checks["paraphrase_margin"] <= 0:
        raise ExportValidationError(f"{model.name}: a paraphrase scored below unrelated: {checks}")
    if checks["tokenizer_round_trips"] < len(model.round_trip):
        raise ExportValidationError(f"{model.name}: tokenizer round trip failed: {trips}")
    if diff > POOLING_TOLERANCE.max_abs_diff or figures.min_cosine < POOLING_TOLERANCE.min_cosine:
        raise ExportValidationError(f"{model.name}: appended pooling differs: {figures}")
    return figures, checks, unit


def quantized(
    model: MavenModel, pooled: Path, tokenizer_file: Path, texts: list[str], fp32: Any
) -> float:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    full = pooled.with_name("fp32.onnx")
    pooled.rename(full)
    quantize_int8(full, pooled)
    full.unlink()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(pooled), opts, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    feeds = _feeds(Tokenizer.from_file(str(tokenizer_file)), texts, model.max_seq_length, inputs)
    (int8,) = session.run(None, feeds)
    cosine = float((_unit(int8) * fp32).sum(1).min())
    if cosine < INT8_MIN_COSINE:
        raise ExportValidationError(
            f"{model.name}: int8 keeps cosine {cosine:.4f} to fp32, under {INT8_MIN_COSINE}"
        )
    return cosine
