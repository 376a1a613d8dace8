"""The README's Python example runs as it is written (only its data folder is moved)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modalfuse.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = [pytest.mark.needs_export]


def _example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's Python API section has no example"
    return match.group(1)


def test_the_readme_python_example_runs(
    tmp_path: Path, settings: Settings, minilm_fp32: Path
) -> None:
    code = _example().replace('"/tmp/modalfuse-example"', repr(str(tmp_path / "data")))
    assert code != _example(), "the example's data folder moved"
    env = os.environ | {"MODALFUSE_MODEL_CACHE_DIR": str(settings.models_dir)}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "2 1 fields.price"
    assert lines[1] == "1 Red summer dress ['lexical', 'text_vector']"
    assert len(lines) == 3
