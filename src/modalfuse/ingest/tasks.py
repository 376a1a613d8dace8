"""The ingest task: one batch of messages per task, retried only for transient failures."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from modalfuse.engines.base import DeadLetter
from modalfuse.errors import ModalfuseError, TransientError
from modalfuse.ingest.pipeline import Outcome, Pipeline, backoff, gave_up
from modalfuse.settings import Settings

log = logging.getLogger(__name__)
_PIPELINES: dict[int, Pipeline] = {}


def pipeline_for(settings: Settings) -> Pipeline:
    """One pipeline per process, built in the process that uses it (after any fork)."""
    pid = os.getpid()
    if pid not in _PIPELINES:
        _PIPELINES[pid] = Pipeline(settings)
    return _PIPELINES[pid]


def run_batch(task: Task, items: list[Any], done: dict[str, Any] | None) -> dict[str, Any]:
    settings: Settings = task.app.conf.modalfuse_settings
    pipeline = pipeline_for(settings)
    attempt = task.request.retries + 1
    try:
        outcome = pipeline.process(items, attempt=attempt)
    except (TransientError, SoftTimeLimitExceeded) as e:
        outcome = Outcome()
        outcome.retry = [_retry(item, e) for item in items]
    except ModalfuseError as e:
        # Not a property of any one message (a broken encoder directory, say): retry the
        # batch, and dead-letter it with this reason when the retries run out.
        log.exception("batch failed")
        outcome = Outcome()
        outcome.retry = [_retry(item, e) for item in items]
    summary = _add(done, outcome.summary())
    if outcome.retry and task.request.retries >= settings.ingest_max_retries:
        outcome.dead += gave_up(outcome.retry, attempts=attempt, default_index=settings.index)
        summary["dead_lettered"] += len(outcome.retry)
        outcome.retry = []
    _store_dead_letters(pipeline, outcome.dead)
    if outcome.retry:
        # Counted where the run's summary is read: a retry is never silent either.
        summary["retried"] = summary.get("retried", 0) + len(outcome.retry)
        delay = backoff(settings, task.request.retries)
        log.warning(
            "retrying %d message(s) in %.1fs (attempt %d of %d): %s",
            len(outcome.retry),
            delay,
            attempt,
            settings.ingest_max_retries + 1,
            outcome.retry[0].reason,
        )
        raise task.retry(
            args=[[r.item for r in outcome.retry]],
            kwargs={"done": summary},
            countdown=delay,
            max_retries=settings.ingest_max_retries,
        )
    return summary


def _store_dead_letters(pipeline: Pipeline, records: list[DeadLetter]) -> None:
    by_index: dict[str, list[DeadLetter]] = defaultdict(list)
    for record in records:
        by_index[record.index].append(record)
    try:
        for index, group in by_index.items():
            pipeline.engine.dead_letter(index, group)
    except ModalfuseError as e:
        # Nowhere safe to put them: hand the whole batch back to the broker rather than ack it.
        log.error("cannot store dead letters (%s); requeueing the batch", e)
        raise Reject(str(e), requeue=True) from e


def _retry(item: Any, error: BaseException) -> Any:
    from modalfuse.ingest.pipeline import Retry

    return Retry(item=item, reason=f"{type(error).__name__}: {error}")


def _add(done: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    return add_summaries(done or {}, new)


def add_summaries(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Counts add; `stage_s` timings add per stage."""
    total: dict[str, Any] = {"indexed": 0, "stale": 0, "dead_lettered": 0, "retried": 0}
    total["commit_retries"] = 0
    total["stage_s"] = {}
    for part in (a, b):
        for key, value in part.items():
            if key == "stage_s":
                for stage, seconds in value.items():
                    total["stage_s"][stage] = round(total["stage_s"].get(stage, 0.0) + seconds, 4)
            else:
                total[key] = total.get(key, 0) + value
    return total


def register_tasks(app: Celery) -> None:
    @app.task(name="modalfuse.ingest", bind=True)  # type: ignore[untyped-decorator]
    def ingest(self: Task, items: list[Any], done: dict[str, Any] | None = None) -> dict[str, Any]:
        return run_batch(self, items, done)
