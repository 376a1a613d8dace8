import json
from pathlib import Path

import numpy as np
import pytest

from modalfuse.errors import ExportValidationError, InvalidText, ModelLoadError
from modalfuse.onnx_models.export.validate import TOLERANCES, compare, validate
from modalfuse.onnx_models.manifest import read_manifest
from modalfuse.onnx_models.runtime.text import coerce_text


def test_non_utf8_bytes_name_the_field_and_position() -> None:
    with pytest.raises(InvalidText, match=r"^texts\[2\]: not valid UTF-8 .* at byte 3") as e:
        coerce_text(b"abc\xff\xfe", field="texts[2]")
    assert e.value.field == "texts[2]"
    assert coerce_text("caf\u00e9".encode(), field="t") == "café"


def test_lone_surrogates_and_wrong_types_are_refused() -> None:
    with pytest.raises(InvalidText, match="lone surrogate"):
        coerce_text("ok \udcff", field="t")
    with pytest.raises(InvalidText, match="expected text, got int"):
        coerce_text(3, field="t")


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"manifest\.json missing"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ModelLoadError, match="format 99"):
        read_manifest(tmp_path)


def test_compare_reports_worst_row() -> None:
    ref = np.eye(3, dtype=np.float32)
    ours = ref.copy()
    ours[1] = [0.0, 0.6, 0.8]
    max_abs, min_cos, _ = compare(ours, ref)
    assert max_abs == pytest.approx(0.8) and min_cos == pytest.approx(0.6)


def test_export_outside_tolerance_fails_loudly() -> None:
    ref = np.eye(4, dtype=np.float32)
    drifted = ref + 0.01  # cosine ~0.99: fine for int8, not for fp32
    ok = validate(
        dtype="int8",
        reference_name="r",
        provider="p",
        runs={"text": (lambda: drifted, lambda: ref)},
    )
    assert ok.min_cosine > TOLERANCES["int8"].min_cosine
    with pytest.raises(ExportValidationError, match=r"fp32 export misses its tolerance.*text:"):
        validate(
            dtype="fp32",
            reference_name="r",
            provider="p",
            runs={"text": (lambda: drifted, lambda: ref)},
        )
    with pytest.raises(ExportValidationError, match="NaN"):
        validate(
            dtype="fp32",
            reference_name="r",
            provider="p",
            runs={"text": (lambda: ref * np.nan, lambda: ref)},
        )
