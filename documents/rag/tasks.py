"""Celery tasks of RAG: answering a question, and beat's cache warming. Tasks take ids and are
safe to run twice (a question is claimed before Claude is called; warming claims its set)."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from documents.rag import services

log = logging.getLogger(__name__)


@shared_task(name="documents.rag.tasks.answer_question")
def answer_question(query_id: int) -> str:
    """Stream the answer to a stored question to its page (the reply protocol) and store it."""
    try:
        query = services.ragquery_run(query_id=query_id)
    except SoftTimeLimitExceeded:
        log.warning("rag answer %s hit the task's time limit", query_id)
        return "time_limit"
    return query.status if query is not None else "skipped"


@shared_task(name="documents.rag.tasks.warm_caches")
def warm_caches() -> int:
    """Beat: queue a warming call for each set whose document prompt is about to expire while
    people are still asking about it. Returns how many were queued."""
    set_ids = services.ragsets_to_warm()
    for set_id in set_ids:
        warm_set.delay(set_id)
    return len(set_ids)


@shared_task(name="documents.rag.tasks.warm_set")
def warm_set(document_set_id: int) -> str:
    return services.ragset_warm(document_set_id=document_set_id)
