"""The ingest worker process: `run_worker` in this process (what `modalfuse worker` calls), or
`spawn_worker` as a child (the demo, evaluation, the benchmarks and the tests), started through
this module's entry point. The child reads its whole configuration from standard input, not
from its environment: what the parent resolved is what the worker runs with.

    python -m modalfuse.ingest.worker < '{"settings": {...}, "concurrency": 2, "pool": "prefork"}'
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from modalfuse.settings import Settings

Pool = Literal["prefork", "solo", "threads"]
POOLS: tuple[Pool, ...] = ("prefork", "solo", "threads")


def worker_json(settings: Settings, **options: Any) -> str:
    """A worker's configuration as JSON, secrets in clear, for the child's standard input."""

    def reveal(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"cannot pass {type(value).__name__} to a worker")

    return json.dumps({"settings": settings.model_dump()} | options, default=reveal)


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    queues: Sequence[str] = (),
    pool: Pool = "prefork",
    loglevel: str = "INFO",
) -> None:
    """Consume ingest batches until stopped: encode, write, dead-letter what can never succeed."""
    from modalfuse.ingest.app import create_app, worker_argv

    processes = 1 if pool == "solo" else concurrency or os.cpu_count() or 1
    if settings.intra_op_threads == 0 and processes > 1:
        # Processes share the cores: each encoder gets its slice. Several one-thread sessions
        # beat one session on every core (measured: 1.0 vs 0.8 of the raw encoder's docs/s).
        threads = max(1, (os.cpu_count() or 1) // processes)
        settings = settings.model_copy(update={"intra_op_threads": threads})
    app = create_app(settings)
    names = [q.strip() for q in (queues or settings.ingest_queue.split(",")) if q.strip()]
    app.worker_main(worker_argv(concurrency=processes, queues=names, pool=pool, loglevel=loglevel))


@contextlib.contextmanager
def spawn_worker(
    settings: Settings,
    *,
    log: Path,
    concurrency: int | None = None,
    pool: Pool = "prefork",
    loglevel: str = "WARNING",
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker in its own process group, stopped (warm shutdown, then SIGKILL) on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    config = worker_json(settings, concurrency=concurrency, pool=pool, loglevel=loglevel)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modalfuse.ingest.worker"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    assert proc.stdin is not None
    with proc.stdin:
        proc.stdin.write(config.encode())
    try:
        yield proc
    finally:
        stop(proc, signal.SIGTERM)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL, grace: float = 15.0) -> None:
    """Send `sig` to the worker's whole process group; SIGKILL it if it outlives `grace`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


def exit_reason(proc: subprocess.Popen[bytes], log: Path) -> str | None:
    """None while the worker runs; once it has exited, its exit status and the last line of
    its log that names an error (what a wait on its batches reports instead of hanging)."""
    code = proc.poll()
    if code is None:
        return None
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line for line in lines if "Error" in line or "CRITICAL" in line]
    last = (errors or lines or ["(empty log)"])[-1].strip()
    return f"the worker exited with status {code} ({last}; log: {log})"


def main() -> None:
    config = json.loads(sys.stdin.read())
    settings = Settings.model_validate(config.pop("settings"))
    run_worker(settings, **config)


if __name__ == "__main__":
    main()
