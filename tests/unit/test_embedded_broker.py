"""The embedded broker: a consumer polling the queue folder never claims a message that is still
being written (kombu's own filesystem transport creates the file, then writes it), and a wait
on batches whose worker has died ends with the reason instead of hanging."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from celery.exceptions import TimeoutError as ResultTimeout
from celery.result import AsyncResult
from kombu.connection import Connection

from modalfuse.errors import WorkerExited
from modalfuse.ingest import transport
from modalfuse.ingest.app import create_app
from modalfuse.ingest.producer import wait
from modalfuse.settings import Settings


def test_a_message_is_never_visible_half_written(tmp_path: Path) -> None:
    transport.register()
    payload = {"body": "x" * 2_000_000, "n": 0}
    seen: list[int] = []
    stop = threading.Event()
    with Connection(
        f"{transport.SCHEME}://", transport_options=transport.broker_options(tmp_path)
    ) as conn:
        channel = conn.default_channel
        folder = Path(channel.data_folder_in)

        def watch() -> None:
            # What `_get` sees: every file named like a message must parse whole.
            while not stop.is_set():
                for path in folder.glob("*.q.msg"):
                    try:
                        data = path.read_bytes()
                    except FileNotFoundError:
                        continue
                    seen.append(json.loads(data)["n"])

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for n in range(20):
                channel._put("q", payload | {"n": n})
        finally:
            stop.set()
            watcher.join()
        names = sorted(p.name for p in folder.iterdir())
        assert len(names) == 20 and all(n.endswith(".q.msg") for n in names), names
        # FIFO order survives the rename: a name still starts with its monotonic time.
        assert [channel._get("q")["n"] for _ in range(20)] == list(range(20))
    assert seen, "the watcher never saw a message"


def test_a_wait_on_a_worker_that_has_exited_ends_with_its_reason(tmp_path: Path) -> None:
    # A batch no worker will ever finish: without the liveness check this waits out the timeout.
    app = create_app(Settings(data_dir=tmp_path))
    pending = [(10, AsyncResult("never-run", app=app))]
    with pytest.raises(WorkerExited, match=r"status -9 \(boom\), with 1 of 1 batch\(es\)"):
        wait(pending, timeout=600, worker_gone=lambda: "status -9 (boom)")
    # With a live worker the timeout still applies, as a timeout.
    with pytest.raises(ResultTimeout):
        wait(pending, timeout=0.3, worker_gone=lambda: None)
