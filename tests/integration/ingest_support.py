"""Helpers for the queue tests: real worker processes, brokers, and catalogue files."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from modalfuse.engines.lancedb import LanceDBEngine
from modalfuse.ingest.worker import spawn_worker, stop
from modalfuse.mappings.schema import load_schema, parse_schema, resolve
from modalfuse.sample import SAMPLE_DIR, load_catalogue
from modalfuse.settings import Settings
from tests.conftest import service_unavailable

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/0"


def reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def require_broker(url: str) -> None:
    host, port = ("127.0.0.1", 5672) if url.startswith("amqp") else ("127.0.0.1", 6379)
    if not reachable(host, port):
        service_unavailable(f"no broker at {host}:{port} for {url.split(':')[0]} (start one)")


def worker(settings: Settings, *, log: Path, concurrency: int = 1) -> Any:
    return spawn_worker(settings, log=log, concurrency=concurrency)


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    stop(proc, sig)


def create_index(settings: Settings, name: str, dims: dict[str, int]) -> LanceDBEngine:
    engine = LanceDBEngine(settings)
    engine.create(resolve(parse_schema(load_schema().model_dump() | {"name": name}), dims))
    return engine


def catalogue_file(
    folder: Path, count: int, *, with_images: bool = True, start: int = 0
) -> tuple[Path, list[str]]:
    """`count` sample products as bare documents with relative image paths, images copied."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = load_catalogue()[start : start + count]
    lines = []
    for doc_id, fields in rows:
        doc = {"id": doc_id, **fields}
        if with_images and "image" in fields:
            target = folder / fields["image"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SAMPLE_DIR / fields["image"], target)
        else:
            doc.pop("image", None)
        lines.append(json.dumps(doc))
    path = folder / "products.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, [d for d, _ in rows]


def wait_for(predicate: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
