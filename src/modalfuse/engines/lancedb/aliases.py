"""Aliases for LanceDB, which has none: a JSON file beside the tables, changed under a lock.

The file is replaced atomically (`os.replace`), so readers never see half a write, and changes
are serialised with an exclusive `flock`, so two processes swapping at once cannot lose one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modalfuse.errors import ConfigError

FILE, LOCK = "_aliases.json", "_aliases.lock"


def stored_files(kind: str) -> tuple[str, str]:
    """The file and lock of one kind of settings stored per physical table (`_fusion.json`
    holds what `modalfuse index set-fusion` made each table's default)."""
    return f"_{kind}.json", f"_{kind}.lock"


class AliasFile:
    """A small string -> string JSON map beside the tables, edited under an exclusive lock."""

    def __init__(self, root: Path, file: str = FILE, lock: str = LOCK) -> None:
        self._path = root / file
        self._lock = root / lock
        self._cached: tuple[tuple[int, int, int], dict[str, str]] | None = None

    def read(self) -> dict[str, str]:
        # Every search resolves its alias: re-parse only when the file changed (it is replaced,
        # never edited in place, so a new version always has a new inode or mtime).
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cached is not None and self._cached[0] == stamp:
            return dict(self._cached[1])
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{self._path}: unreadable alias file: {e}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{self._path}: expected an object of alias -> table")
        parsed = {str(k): str(v) for k, v in data.items()}
        self._cached = (stamp, parsed)
        return dict(parsed)

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, str]]:
        """Yield the current aliases; whatever the block leaves in the dict is written back."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                aliases = self.read()
                yield aliases
                fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".aliases-")
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(aliases, f, indent=2, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                Path(tmp).replace(self._path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
