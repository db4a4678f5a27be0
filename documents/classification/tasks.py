"""Celery entry points: each takes ids, re-reads state and is safe to run twice (acks_late).

The work is in `services`; waiting for a batch is `classification_tick` (beat), never a sleep.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.core.exceptions import ObjectDoesNotExist

from documents.classification import services

log = logging.getLogger(__name__)


def _task(fn: Callable[..., Any]) -> Any:
    """A classification task; a row deleted meanwhile (its job or set removed) ends it quietly."""

    @functools.wraps(fn)
    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except ObjectDoesNotExist:
            log.info("classification task found nothing to do", extra={"task": fn.__name__})
            return None

    return shared_task(name=f"{__name__}.{fn.__name__}", acks_late=True)(run)


@_task
def classification_job_plan(job_id: int) -> None:
    services.classification_job_plan(job_id=job_id)


@_task
def classification_batch_submit(batch_id: int) -> None:
    services.classification_batch_submit(batch_id=batch_id)


@_task
def classification_batch_recover(batch_id: int) -> None:
    services.classification_batch_recover(batch_id=batch_id)


@_task
def classification_batch_poll(batch_id: int) -> None:
    services.classification_batch_poll(batch_id=batch_id)


@_task
def classification_batch_ingest(batch_id: int) -> None:
    services.classification_batch_ingest(batch_id=batch_id)


@_task
def classification_job_advance(job_id: int) -> None:
    services.classification_job_advance(job_id=job_id)


@_task
def classification_job_cancel_remote(job_id: int) -> None:
    services.classification_job_cancel_remote(job_id=job_id)


@_task
def classification_realtime_run(job_id: int) -> None:
    services.classification_realtime_run(job_id=job_id)


@_task
def classification_tick() -> dict[str, int]:
    return services.classification_tick()
