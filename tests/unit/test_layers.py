"""The layer contracts in pyproject.toml (`[tool.importlinter]`) hold, and they can fail: the
same check over a copy of the package with one upward import added reports that import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "modalfuse"


def lint_imports(source_root: Path, config: Path) -> subprocess.CompletedProcess[str]:
    # A child process: grimp caches the import graph per process, and PYTHONPATH must find
    # the copy before the installed package.
    env = os.environ | {"PYTHONPATH": str(source_root)}
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
         "--config", str(config), "--no-cache"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_layer_contracts_hold() -> None:
    proc = lint_imports(ROOT / "src", ROOT / "pyproject.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 3 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize(
    ("module", "upward", "message"),
    [
        (
            "engines/base.py",
            "from modalfuse.query import querylog",
            "modalfuse.engines is not allowed to import modalfuse.query",
        ),
        (
            "query/page.py",
            "from modalfuse.ingest import producer",
            "modalfuse.query is not allowed to import modalfuse.ingest",
        ),
        (
            "ingest/worker.py",
            "from modalfuse import cli",
            "modalfuse.ingest is not allowed to import modalfuse.cli",
        ),
        (
            "query/searcher.py",
            "from modalfuse.engines.lancedb import engine",
            "modalfuse.query is not allowed to import modalfuse.engines.lancedb",
        ),
    ],
)
def test_a_deliberate_violation_is_reported(
    tmp_path: Path, module: str, upward: str, message: str
) -> None:
    copy = tmp_path / "src" / "modalfuse"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.onnx*"))
    target = copy / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{upward}  # noqa\n")
    proc = lint_imports(tmp_path / "src", ROOT / "pyproject.toml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in proc.stdout
    assert f"{module.removesuffix('.py').replace('/', '.')}" in proc.stdout
