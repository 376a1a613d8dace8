"""Run a `modalfuse worker` as a child process with given settings (demo, benchmarks, tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from modalfuse.settings import Settings

CLI = [sys.executable, "-c", "from modalfuse.cli import main; main()"]


def env_for(settings: Settings) -> dict[str, str]:
    """This environment plus every value of `settings` as its MODALFUSE_* variable."""
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_none=True).items():
        key = f"MODALFUSE_{name.upper()}"
        if isinstance(value, list):
            env[key] = ",".join(str(v) for v in value)
        elif hasattr(value, "get_secret_value"):
            env[key] = value.get_secret_value()
        else:
            env[key] = str(value)
    return env


@contextlib.contextmanager
def spawn_worker(
    settings: Settings,
    *,
    log: Path,
    concurrency: int | None = None,
    pool: str = "prefork",
    loglevel: str = "WARNING",
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker in its own process group, stopped (warm shutdown, then SIGKILL) on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                *CLI,
                "worker",
                *([f"--concurrency={concurrency}"] if concurrency else []),
                f"--pool={pool}",
                f"--loglevel={loglevel}",
            ],
            env=env_for(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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
