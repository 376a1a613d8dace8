"""The `modalfuse` console script as a user runs it (a subprocess, real exports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modalfuse.settings import Settings

pytestmark = [pytest.mark.needs_export, pytest.mark.slow]
CLI = [sys.executable, "-c", "from modalfuse.cli import main; main()"]


def _run(args: list[str], settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    environ = os.environ | {"MODALFUSE_DATA_DIR": str(settings.data_dir)} | env
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=environ, timeout=600, check=False
    )


def test_export_json_for_the_default_text_model(settings: Settings, minilm_fp32: Path) -> None:
    proc = _run(["export", "--json"], settings)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["directory"] == str(minilm_fp32)
    assert doc["validation"]["max_abs_diff"] <= 1e-4 and doc["validation"]["min_cosine"] >= 0.9999
    assert doc["text"]["max_seq_length"] == 256


def test_export_json_for_a_tiny_clip(
    settings: Settings, tiny_clip_source: Path, tiny_clip: Path
) -> None:
    proc = _run(["export", "--model", str(tiny_clip_source), "--kind", "clip", "--json"], settings)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kind"] == "clip" and doc["validation"]["min_cosine"] >= 0.9999
    assert set(doc["validation"]["graphs"]) == {"text", "image"}


def test_errors_are_one_clear_line(settings: Settings, tmp_path: Path, minilm_fp32: Path) -> None:
    proc = _run(["export", "--model", str(tmp_path / "nowhere")], settings)
    assert (
        proc.returncode == 2 and "ModelLoadError" in proc.stderr and "does not exist" in proc.stderr
    )
    proc = _run(["export", "--quantize", "int4"], settings)
    assert proc.returncode == 2 and "only int8" in proc.stderr
    proc = _run(["demo", "--json"], settings, MODALFUSE_EXECUTION_PROVIDER="tensorrt")
    assert proc.returncode == 2
    assert (
        "ProviderUnavailable" in proc.stderr
        and "available: " in proc.stderr
        and "CPUExecutionProvider" in proc.stderr
    )


def test_demo_encodes_the_sample_catalogue(settings: Settings, minilm_int8: Path) -> None:
    proc = _run(["demo", "--no-serve", "--json"], settings)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["documents"] == 2000
    top = doc["examples"]["red summer dress"][0]["title"].lower()
    assert "red" in top and "dress" in top
