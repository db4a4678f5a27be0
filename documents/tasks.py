from __future__ import annotations

from celery import shared_task

from documents import services


@shared_task(name="documents.extract_documents", acks_late=True)
def extract_documents(document_ids: list[int]) -> dict[str, int]:
    """Extract and chunk a batch of documents (ids); idempotent, safe to run twice."""
    outcome = services.documents_extract(document_ids=document_ids)
    return {
        "ready": outcome.ready,
        "failed": outcome.failed,
        "skipped": outcome.skipped,
        "requeued": outcome.requeued,
    }
