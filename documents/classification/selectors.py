"""Reads for classification jobs. Who may see a job is who may manage its set (staff): one
rule, `classificationjob_visible_to`, used by every view, export and the command."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Q, QuerySet, Sum

from documents.classification.models import (
    ClassificationBatch,
    ClassificationJob,
    ClassificationResult,
)
from documents.classification.services import SUBJECT_TYPE
from documents.selectors import documentset_managed_by

Outcome = ClassificationResult.Outcome
BatchStatus = ClassificationBatch.Status

# Progress bar segments, in the order drawn: (key, label).
SEGMENTS = (
    ("succeeded", "Classified"),
    ("invalid", "Invalid output"),
    ("errored", "Errored"),
    ("expired", "Expired"),
    ("canceled", "Canceled"),
    ("running", "In progress"),
    ("queued", "Queued"),
)
_QUEUED_BATCH = (BatchStatus.PLANNED, BatchStatus.SUBMITTING)


def classificationjob_visible_to(
    user: AbstractBaseUser | AnonymousUser,
) -> QuerySet[ClassificationJob]:
    """Jobs `user` may see, run and cancel: those on sets they manage (staff); none otherwise."""
    return ClassificationJob.objects.filter(document_set__in=documentset_managed_by(user))


def classificationjob_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet:
    """Visible jobs, newest first, with their set and who started them."""
    return (
        classificationjob_visible_to(user)
        .select_related("document_set", "created_by")
        .order_by("-created_at", "-id")
    )


@dataclass(frozen=True)
class Segment:
    key: str
    label: str
    count: int
    percent: float  # of the job's documents
    offset: float  # where the segment starts, in percent


@dataclass(frozen=True)
class Progress:
    total: int
    counts: dict[str, int]
    segments: list[Segment]
    done: int  # documents with a final outcome (or one that waits only for its retry)
    percent: int
    batches: dict[str, int]  # batch rows by status (extras left out)
    extras: int


def classification_job_progress(*, job: ClassificationJob) -> Progress:
    """Documents by outcome (pending split into queued and in progress) and batches by state,
    in three grouped queries."""
    counts = dict.fromkeys((key for key, _label in SEGMENTS), 0)
    rows = (
        ClassificationResult.objects.filter(job=job)
        .values_list("outcome", "batch__status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for outcome, batch_status, n in rows:
        if outcome == Outcome.PENDING:
            if job.mode == ClassificationJob.Mode.REALTIME:
                key = "running" if job.status == ClassificationJob.Status.RUNNING else "queued"
            else:
                key = "queued" if batch_status in _QUEUED_BATCH or not batch_status else "running"
        elif (
            outcome in (Outcome.ERRORED, Outcome.EXPIRED)
            and batch_status
            and batch_status not in ClassificationBatch.DONE_STATUSES
        ):
            key = "running"  # waiting for its retry or resubmission
        else:
            key = outcome
        counts[key] = counts.get(key, 0) + n
    total = sum(counts.values())
    segments: list[Segment] = []
    offset = 0.0
    for key, label in SEGMENTS:
        percent = 100.0 * counts[key] / total if total else 0.0
        segments.append(Segment(key, label, counts[key], round(percent, 3), round(offset, 3)))
        offset += percent
    done = total - counts["running"] - counts["queued"]
    batches: dict[str, int] = {}
    extras = 0
    for kind, status, n in (
        ClassificationBatch.objects.filter(job=job)
        .values_list("kind", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        if kind == ClassificationBatch.Kind.EXTRA:
            extras += n
        else:
            batches[status] = batches.get(status, 0) + n
    return Progress(
        total=total,
        counts=counts,
        segments=segments,
        done=done,
        percent=int(100 * done / total) if total else 0,
        batches=batches,
        extras=extras,
    )


def classification_job_cost(*, job: ClassificationJob) -> Decimal:
    """What the job has cost so far: its rows in the usage ledger (batch lines at batch price)."""
    from claudeapp.models import UsageRecord

    total = UsageRecord.objects.filter(subject_type=SUBJECT_TYPE, subject_id=str(job.pk)).aggregate(
        cost=Sum("cost_usd")
    )["cost"]
    return total or Decimal(0)


def classification_label_counts(*, job: ClassificationJob) -> list[tuple[str, int]]:
    """(label, documents) in the job's label order, zeros included."""
    found = dict(
        ClassificationResult.objects.filter(job=job, outcome=Outcome.SUCCEEDED)
        .values_list("label")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [(name, found.get(name, 0)) for name in job.label_names]


def classification_result_list(
    *,
    job: ClassificationJob,
    label: str = "",
    outcome: str = "",
    search: str = "",
) -> QuerySet[ClassificationResult]:
    """A job's results with their document's name, filtered by label, outcome and a search in
    the file name, the label's rationale and the key phrases."""
    results = ClassificationResult.objects.filter(job=job).select_related("document")
    results = results.defer("document__text", "document__metadata", "raw_text")
    if label:
        results = results.filter(label=label, outcome=Outcome.SUCCEEDED)
    if outcome in Outcome.values:
        results = results.filter(outcome=outcome)
    if search := search.strip():
        results = results.filter(
            Q(document__filename__icontains=search) | Q(rationale__icontains=search)
        )
    return results.order_by("document_id")


def classification_batches(*, job: ClassificationJob) -> QuerySet[ClassificationBatch]:
    return ClassificationBatch.objects.filter(job=job).order_by("id")


EXPORT_FIELDS = (
    "document_id",
    "filename",
    "outcome",
    "label",
    "confidence",
    "rationale",
    "key_phrases",
    "error",
    "raw_text",
)


def classification_export_rows(*, job: ClassificationJob) -> Iterator[dict[str, Any]]:
    """Every result of a job, in document order, as plain dicts (streamed in chunks)."""
    rows = (
        ClassificationResult.objects.filter(job=job)
        .order_by("document_id")
        .values_list(
            "document_id",
            "document__filename",
            "outcome",
            "label",
            "confidence",
            "rationale",
            "key_phrases",
            "error",
            "raw_text",
        )
        .iterator(chunk_size=2000)
    )
    for row in rows:
        yield dict(zip(EXPORT_FIELDS, row, strict=True))
