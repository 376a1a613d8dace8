"""The Celery app: broker and backend from settings, late acks, bounded retries, time limits.

Brokers: the embedded `modalfuse-fs://` (a durable filesystem queue in <data_dir>/broker, the
default), RabbitMQ (`amqp://`) or Redis (`redis://`). Result backends follow: files in
<data_dir>/results, the same Redis, or `rpc://` for RabbitMQ.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from modalfuse.ingest import transport
from modalfuse.settings import Settings

TASK = "modalfuse.ingest"


def broker_url(settings: Settings) -> str:
    return settings.broker_url or f"{transport.SCHEME}://localhost//"


def backend_url(settings: Settings) -> str:
    if settings.result_backend:
        return settings.result_backend
    broker = broker_url(settings)
    if broker.startswith(("redis://", "rediss://")):
        return broker
    if broker.startswith(("amqp://", "amqps://", "pyamqp://")):
        return "rpc://"
    results = settings.data_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    return f"file://{results}"


def create_app(settings: Settings) -> Celery:
    transport.register()
    app = Celery("modalfuse", set_as_current=False)
    options: dict[str, Any] = {}
    if broker_url(settings).startswith(f"{transport.SCHEME}://"):
        # The embedded broker is polled; kombu's 1 s default would idle a worker between
        # batches that take a fraction of that.
        options = transport.broker_options(settings.broker_root) | {"polling_interval": 0.05}
    app.conf.update(
        broker_url=broker_url(settings),
        result_backend=backend_url(settings),
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.ingest_queue,
        # Ack after the batch is written or dead-lettered, and put it back if the worker dies,
        # so a crash re-delivers rather than loses; writes are idempotent and versioned.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One batch running and one waiting per process: no idle gap between batches, and
        # little work stranded on a busy worker (each task is already a batch of documents,
        # `ingest_batch_size` of them).
        worker_prefetch_multiplier=settings.worker_prefetch_multiplier,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_time_limit=settings.task_time_limit_s,
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.conf.modalfuse_settings = settings
    from modalfuse.ingest.tasks import register_tasks

    register_tasks(app)
    return app


def worker_argv(*, concurrency: int, queues: list[str], pool: str, loglevel: str) -> list[str]:
    return [
        "worker",
        f"--concurrency={concurrency}",
        f"--queues={','.join(queues)}",
        f"--pool={pool}",
        f"--loglevel={loglevel}",
        # No broadcast chatter between workers: nothing here needs it, and the embedded broker
        # would write a file per heartbeat.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--hostname=modalfuse-{os.getpid()}@%h",
    ]
