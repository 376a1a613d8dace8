"""A filesystem broker that survives `kill -9`: kombu's filesystem transport, plus durable unacks.

kombu's `filesystem://` transport deletes a message file the moment a consumer *reads* it, and
keeps unacknowledged messages only in the consumer's memory. `acks_late` then means nothing
when the worker process dies: its prefetched and in-flight messages are gone.

Here a read moves the file into `unacked/` under a name that carries the consumer's pid, an ack
deletes it, a requeue (or a graceful shutdown) moves it back, and any process that opens a
channel moves back the unacked files of consumers that are no longer alive. Messages are
therefore delivered at least once, as on RabbitMQ; idempotent, versioned writes make that safe.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

SCHEME = "modalfuse-fs"
_UNACKED_KEY = "_modalfuse_unacked"
_SEP = "~"
_RECOVER_EVERY_S = 5.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class QoS(virtual.QoS):
    """Tracks which unacked file belongs to which delivery tag."""

    def __init__(self, channel: Any, prefetch_count: int = 0) -> None:
        super().__init__(channel, prefetch_count)
        self._files: dict[Any, Path] = {}

    def append(self, message: Any, delivery_tag: Any) -> None:
        path = message._raw.get(_UNACKED_KEY)
        if path:
            self._files[delivery_tag] = Path(path)
        super().append(message, delivery_tag)

    def ack(self, delivery_tag: Any) -> None:
        path = self._files.pop(delivery_tag, None)
        if path:
            path.unlink(missing_ok=True)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        path = self._files.pop(delivery_tag, None)
        if path:
            if requeue:
                self.channel.requeue_file(path)
            else:
                path.unlink(missing_ok=True)
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list[Any]:
        # On a graceful shutdown the files go back as they are, rather than being re-published
        # as copies (the base class's way), which would leave the originals behind as duplicates.
        self._flush()
        for tag in list(self._delivered):
            path = self._files.pop(tag, None)
            if path:
                self.channel.requeue_file(path)
        self._delivered.clear()
        return []


class Channel(filesystem.Channel):
    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_recovery = 0.0
        self.recover_orphans()

    @property
    def unacked_folder(self) -> Path:
        folder = Path(self.transport_options.get("unacked_folder", "unacked"))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def queue_folder(self) -> Path:
        return Path(self.data_folder_in)

    def requeue_file(self, path: Path) -> None:
        name = path.name.split(_SEP, 1)[-1]
        with contextlib.suppress(FileNotFoundError):
            path.replace(self.queue_folder / name)

    def recover_orphans(self) -> int:
        """Move back the unacked messages of consumers that died without acking them."""
        self._last_recovery = time.monotonic()
        moved = 0
        for entry in self.unacked_folder.iterdir():
            owner, _, _ = entry.name.partition(_SEP)
            if owner.isdigit() and not _alive(int(owner)):
                self.requeue_file(entry)
                moved += 1
        return moved

    def _files_of(self, queue: str) -> list[Path]:
        wanted = f"{queue}.msg"
        return sorted(p for p in self.queue_folder.iterdir() if p.name.partition(".")[2] == wanted)

    # kombu's own two classes disagree on this signature; this is the filesystem one.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # kombu creates the message file, then writes it: a consumer polling in between
        # claims an empty file. Written under another name and renamed, a message appears whole.
        name = f"{int(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = Path(self.data_folder_out) / name
        part = final.with_name(name + ".part")
        try:
            part.write_bytes(str_to_bytes(dumps(payload)))
            part.replace(final)
        except OSError as e:
            raise ChannelError(f"cannot add {final} to the queue folder: {e}") from e

    def _get(self, queue: str, timeout: Any = None) -> Any:
        if time.monotonic() - self._last_recovery > _RECOVER_EVERY_S:
            self.recover_orphans()
        for path in self._files_of(queue):
            claimed = self.unacked_folder / f"{os.getpid()}{_SEP}{path.name}"
            try:
                # rename is atomic: of several consumers, exactly one claims the file.
                path.rename(claimed)
            except OSError:
                continue
            payload: dict[str, Any] = loads(bytes_to_str(claimed.read_bytes()))
            payload[_UNACKED_KEY] = str(claimed)
            return payload
        raise Empty()

    def _size(self, queue: str) -> int:
        return len(self._files_of(queue))

    def _purge(self, queue: str) -> int:
        count = 0
        for path in self._files_of(queue):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                count += 1
        return count


class Transport(filesystem.Transport):
    Channel = Channel
    global_state = virtual.BrokerState()
    driver_name = SCHEME


def register() -> None:
    """Make `modalfuse-fs://` a broker URL kombu understands (idempotent)."""
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"


def broker_options(root: Path) -> dict[str, Any]:
    """Transport options placing the queue folders under `root`; creates them."""
    folders = {
        "data_folder_in": root / "queue",
        "data_folder_out": root / "queue",
        "control_folder": root / "control",
        "unacked_folder": root / "unacked",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {k: str(v) for k, v in folders.items()}


def clear(root: Path) -> None:
    """Remove every queued and unacked message (tests and `--purge`)."""
    shutil.rmtree(root, ignore_errors=True)
