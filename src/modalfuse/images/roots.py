"""The allowed image roots: the `image_roots` setting plus the folders registered in the data
directory by `modalfuse ingest FILE` and the demo, so that a later `modalfuse serve` or worker
started from another shell may read the same images."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from modalfuse.settings import Settings

ROOTS_FILE = "image_roots.json"


def read_roots(settings: Settings) -> list[Path]:
    """Allowed image roots: the setting plus the registered folders."""
    roots = list(settings.image_roots)
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, TypeError):
        roots += [Path(p) for p in json.loads((settings.data_dir / ROOTS_FILE).read_text())]
    return roots


def register_root(settings: Settings, root: Path) -> None:
    """Add `root` to the registry in the data directory (atomically; a no-op when present)."""
    path = settings.data_dir / ROOTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    current = {str(p) for p in read_roots(settings.model_copy(update={"image_roots": []}))}
    if str(root.resolve()) in current:
        return
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(sorted(current | {str(root.resolve())}), indent=2))
    tmp.replace(path)
