"""Writes for classification jobs: start, estimate, plan, submit, recover, poll, ingest, follow up,
cancel; and the realtime runner.

Exactly once, by state rather than by luck:
- A batch row is claimed `planned -> submitting` by one conditional UPDATE, with its request count
  and a time window, before the create call; the id is stored after it. A create that may have
  reached the API without us hearing back (a dropped connection, a timeout, a killed worker) is
  never sent again blindly: `classification_batch_recover` lists the batches created in the
  window with the same request count, waits for them to end, and adopts the one whose results
  carry exactly this row's custom_ids. Extra copies are canceled and never ingested.
- Results are upserted per document (`results_upsert`): an answer is never replaced by a later
  failure, and a line read twice changes nothing. Ingestion records how many lines it stored, so a
  restarted task skips them.
- The ledger is the door's: batch lines are booked once per (batch, custom_id).
Every task finishes well inside the broker's visibility timeout; waiting is beat's re-check
(`classification_tick`), never a sleep.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Q, QuerySet, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from claudeapp.claude import (
    BreakerOpen,
    BudgetExceeded,
    CallContext,
    ClaudeError,
    ClaudeNotConfigured,
    ClaudeUnavailable,
    InvalidResponse,
    RateLimited,
    door,
    structured_parse,
)
from documents.classification.models import (
    ClassificationBatch,
    ClassificationJob,
    ClassificationResult,
)
from documents.classification.prompts import JobPrompt, custom_id, parse_custom_id
from documents.models import Document, DocumentSet

log = logging.getLogger(__name__)

FEATURE = "classification"
SUBJECT_TYPE = "documents.classificationjob"
Outcome = ClassificationResult.Outcome
BatchStatus = ClassificationBatch.Status
JobStatus = ClassificationJob.Status
# Output tokens a reply spends per field (JSON punctuation included): for the estimate only.
OUTPUT_TOKENS = {"label": 12, "confidence": 6, "rationale": 60, "key_phrases": 30}
MIN_LABELS, MAX_LABELS = 2, 50


def _now() -> dt.datetime:
    return timezone.now()


def _seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


def _ctx(job: ClassificationJob) -> CallContext:
    return CallContext(FEATURE, job.created_by_id, (SUBJECT_TYPE, job.pk))


def _enqueue(task_name: str, *args: Any) -> None:
    """Send a classification task once the current transaction commits (to the classification
    queue when one is set, so batch work can have workers of its own)."""
    from documents.classification import tasks

    task = getattr(tasks, task_name)
    queue_name = settings.CLASSIFICATION_QUEUE or None
    transaction.on_commit(lambda: task.apply_async(args, queue=queue_name))


# --- jobs: validation, estimate, create, start, cancel ------------------------------------------


def default_model_id() -> str:
    """The model the classification route picks: the cheapest current model in the registry."""
    from claudeapp.claude.config import get_config
    from claudeapp.claude.registry import choose

    return choose(get_config(), FEATURE).spec.model_id


def clean_labels(labels: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """2..50 labels, each a unique name (letters, digits, `_ - .` and spaces) with a description."""
    cleaned: list[dict[str, str]] = []
    seen: set[str] = set()
    for raw in labels:
        name = str(raw.get("name", "")).strip()
        description = " ".join(str(raw.get("description", "")).split())
        if not name:
            raise ValidationError("Every label needs a name.")
        if len(name) > 100 or any(c in name for c in ":\n\r\t"):
            raise ValidationError(f"“{name[:40]}” is not a usable label name.")
        if not description:
            raise ValidationError(f"Label “{name}” needs a description.")
        if name.lower() in seen:
            raise ValidationError(f"Label “{name}” appears twice.")
        seen.add(name.lower())
        cleaned.append({"name": name, "description": description[:500]})
    if not MIN_LABELS <= len(cleaned) <= MAX_LABELS:
        raise ValidationError(f"Give between {MIN_LABELS} and {MAX_LABELS} labels.")
    return cleaned


def job_documents(
    *, document_set: DocumentSet, document_filter: dict[str, str] | None
) -> QuerySet[Document]:
    """The documents a job with this filter classifies: ready ones with text."""
    documents = Document.objects.filter(
        document_set=document_set, status=Document.Status.READY
    ).exclude(text="")
    document_filter = document_filter or {}
    if search := (document_filter.get("search") or "").strip():
        documents = documents.filter(filename__icontains=search)
    if media_type := (document_filter.get("media_type") or "").strip():
        documents = documents.filter(media_type=media_type)
    return documents


@dataclass(frozen=True)
class Estimate:
    documents: int
    input_tokens: int  # every prompt token: uncached, cache writes and cache reads
    output_tokens: int
    cached_prefix_tokens: int  # per request; 0 when the prefix is below the model's minimum
    cost_usd: Decimal | None  # None: the model has no price
    batch_price: bool
    model_id: str


def classification_job_estimate(
    *,
    document_set: DocumentSet,
    labels: list[dict[str, str]],
    instructions: str,
    model_id: str,
    extra_fields: list[str],
    mode: str,
    document_filter: dict[str, str] | None = None,
) -> Estimate:
    """Tokens and cost of a job before it starts, from local token estimates (no API call):
    the shared prefix is written to the cache once and read by every other request; batch
    mode is priced at the batch rate."""
    from claudeapp.claude.config import get_config
    from claudeapp.claude.pricing import Tokens, compute_cost

    prompt = JobPrompt.build(
        model_id=model_id, labels=labels, instructions=instructions, extra_fields=extra_fields
    )
    config = get_config()
    rates = config.prices.rates_at(config.canonical(prompt.model_id), _now())
    per_request = (
        prompt.prefix_tokens
        + 30  # the user turn: document block framing, title and the short request
    )
    output_each = OUTPUT_TOKENS["label"] + sum(OUTPUT_TOKENS[f] for f in extra_fields)
    documents = job_documents(document_set=document_set, document_filter=document_filter)
    batch = mode == ClassificationJob.Mode.BATCH
    threshold = (rates.long_prompt_threshold if rates else None) or 0
    # The long-prompt tier is decided per request: price short and long documents apart.
    groups: list[tuple[int, int]] = []
    if threshold:
        cut = max(0, threshold - per_request)
        for condition in (Q(token_estimate__lte=cut), Q(token_estimate__gt=cut)):
            row = documents.filter(condition).aggregate(n=Count("id"), tokens=Sum("token_estimate"))
            groups.append((row["n"] or 0, row["tokens"] or 0))
    else:
        row = documents.aggregate(n=Count("id"), tokens=Sum("token_estimate"))
        groups.append((row["n"] or 0, row["tokens"] or 0))
    total_docs = sum(n for n, _ in groups)
    cost: Decimal | None = Decimal(0) if rates else None
    cached = prompt.cached_prefix_tokens
    first = True
    for n, doc_tokens in groups:
        if not n:
            continue
        uncached = n * (per_request - cached) + doc_tokens
        writes = cached if first else 0
        reads = cached * n - writes
        first = False
        if rates is not None and cost is not None:
            cost += compute_cost(
                Tokens(
                    input=uncached,
                    output=n * output_each,
                    cache_write_1h=writes,
                    cache_read=reads,
                ),
                rates,
                batch=batch,
            )
    input_tokens = sum(n * per_request + t for n, t in groups)
    return Estimate(
        documents=total_docs,
        input_tokens=input_tokens,
        output_tokens=total_docs * output_each,
        cached_prefix_tokens=cached,
        cost_usd=cost,
        batch_price=batch,
        model_id=prompt.model_id,
    )


def classification_job_create(
    *,
    document_set: DocumentSet,
    created_by: AbstractBaseUser | None,
    labels: Iterable[dict[str, str]],
    instructions: str,
    model_id: str | None = None,
    extra_fields: Iterable[str] = (),
    mode: str = ClassificationJob.Mode.BATCH,
    document_filter: dict[str, str] | None = None,
    start: bool = True,
) -> ClassificationJob:
    """Create a job with its estimate and (by default) start it once the transaction commits.
    Raises `ValidationError` for labels, fields, mode or a realtime set that is too large."""
    labels = clean_labels(labels)
    instructions = instructions.strip()
    if not instructions:
        raise ValidationError("Say what the labels are for: the instructions are empty.")
    extras = [f for f in ClassificationJob.EXTRA_FIELDS if f in set(extra_fields)]
    if unknown := set(extra_fields) - set(ClassificationJob.EXTRA_FIELDS):
        raise ValidationError(f"Unknown output field: {', '.join(sorted(unknown))}.")
    if mode not in ClassificationJob.Mode.values:
        raise ValidationError(f"Unknown mode “{mode}”.")
    document_filter = {k: v for k, v in (document_filter or {}).items() if v}
    model_id = model_id or default_model_id()
    estimate = classification_job_estimate(
        document_set=document_set, labels=labels, instructions=instructions, model_id=model_id,
        extra_fields=extras, mode=mode, document_filter=document_filter,
    )  # fmt: skip
    if estimate.documents == 0:
        raise ValidationError("No ready documents match: there is nothing to classify.")
    limit = settings.CLASSIFICATION_REALTIME_MAX_DOCUMENTS
    if mode == ClassificationJob.Mode.REALTIME and estimate.documents > limit:
        raise ValidationError(
            f"Realtime mode is for small sets (up to {limit} documents); "
            f"this one has {estimate.documents}. Use batch mode."
        )
    job = ClassificationJob.objects.create(
        document_set=document_set,
        created_by=created_by if getattr(created_by, "pk", None) else None,
        labels=labels,
        instructions=instructions,
        model_id=estimate.model_id,
        extra_fields=extras,
        mode=mode,
        document_filter=document_filter,
        document_count=estimate.documents,
        estimated_input_tokens=estimate.input_tokens,
        estimated_output_tokens=estimate.output_tokens,
        estimated_cost_usd=estimate.cost_usd or Decimal(0),
    )
    if start:
        classification_job_start(job=job)
    return job


def classification_job_start(*, job: ClassificationJob) -> None:
    """Plan the job in a worker once this transaction commits (beat re-sends it if lost)."""
    ClassificationJob.objects.filter(pk=job.pk).update(
        next_check_at=_now() + _seconds(settings.CLASSIFICATION_RECHECK_SECONDS)
    )
    _enqueue("classification_job_plan", job.pk)


def classification_job_cancel(*, job: ClassificationJob) -> bool:
    """Stop a job: batches not sent yet are dropped, sent ones canceled at the API (in a task);
    lines already answered are kept. Returns False when it was already finished or canceling."""
    with transaction.atomic():
        locked = ClassificationJob.objects.select_for_update().get(pk=job.pk)
        if locked.status not in (JobStatus.PENDING, JobStatus.RUNNING):
            return False
        locked.status = JobStatus.CANCELING
        locked.next_check_at = _now()
        locked.save(update_fields=["status", "next_check_at"])
        planned = list(
            locked.batches.filter(status=BatchStatus.PLANNED).values_list("pk", flat=True)
        )
        if planned:
            ClassificationBatch.objects.filter(pk__in=planned).update(
                status=BatchStatus.CANCELED, next_check_at=None
            )
            ClassificationResult.objects.filter(
                batch_id__in=planned, outcome=Outcome.PENDING
            ).update(outcome=Outcome.CANCELED, updated_at=_now())
        _enqueue("classification_job_cancel_remote", locked.pk)
    job.refresh_from_db()
    return True


def classification_job_cancel_remote(*, job_id: int) -> None:
    """Cancel the job's batches that are open at the API; then let the job finish."""
    for batch in ClassificationBatch.objects.filter(
        job_id=job_id, status=BatchStatus.SUBMITTED
    ).exclude(api_batch_id=""):
        try:
            door.batch_cancel(batch.api_batch_id)
        except ClaudeError as error:  # already ended, or the API is away: the poll retries
            log.info(
                "batch cancel failed",
                extra={"batch_id": batch.api_batch_id, "error": str(error)[:200]},
            )
        ClassificationBatch.objects.filter(pk=batch.pk).update(next_check_at=_now())
    _enqueue("classification_job_advance", job_id)


# --- planning -----------------------------------------------------------------------------------


def _split(
    prompt: JobPrompt, job_id: int, rows: Iterable[tuple[int, str, str]]
) -> list[tuple[list[int], int]]:
    """Group documents (pk, title, text) into batches under the API's request and byte limits,
    and under the (smaller) target size: a batch's body is built in one worker's memory, and
    several batches let one be ingested while the next is sent or processed."""
    max_bytes = settings.CLASSIFICATION_BATCH_MAX_BYTES
    max_requests = min(
        settings.CLASSIFICATION_BATCH_MAX_REQUESTS, settings.CLASSIFICATION_BATCH_TARGET_REQUESTS
    )
    # A document bigger than the target still goes, alone, as long as the API takes it.
    target_bytes = min(max_bytes, settings.CLASSIFICATION_BATCH_TARGET_BYTES)
    envelope = len('{"requests":[]}')
    groups: list[tuple[list[int], int]] = []
    current: list[int] = []
    size = envelope
    for pk, title, text in rows:
        request_size = prompt.request_bytes(custom_id=custom_id(job_id, pk), title=title, text=text)
        if request_size + envelope > max_bytes:
            raise ValidationError(
                f"Document {pk} alone is larger than a batch may be ({max_bytes} bytes)."
            )
        if current and (len(current) >= max_requests or size + request_size > target_bytes):
            groups.append((current, size))
            current, size = [], envelope
        current.append(pk)
        size += request_size
    if current:
        groups.append((current, size))
    return groups


def _document_rows(documents: QuerySet[Document]) -> Iterator[tuple[int, str, str]]:
    return documents.order_by("pk").values_list("pk", "filename", "text").iterator(chunk_size=2000)


def _create_batches(
    job: ClassificationJob,
    groups: list[tuple[list[int], int]],
    *,
    kind: str,
    round_number: int,
) -> list[int]:
    """Batch rows for the groups, and every document's result row pointed at its batch."""
    now = _now()
    rows = ClassificationBatch.objects.bulk_create(
        [
            ClassificationBatch(
                job=job,
                kind=kind,
                round=round_number,
                request_count=len(ids),
                byte_size=size,
                next_check_at=now + _seconds(settings.CLASSIFICATION_RECHECK_SECONDS),
            )  # fmt: skip
            for ids, size in groups
        ]
    )
    for batch, (ids, _size) in zip(rows, groups, strict=True):
        if round_number == 0:
            _insert_pending(job, ids, batch.pk)
        else:
            for start in range(0, len(ids), 900):  # under SQLite's bound-parameter limit
                ClassificationResult.objects.filter(
                    job=job, document_id__in=ids[start : start + 900]
                ).update(batch=batch)
    return [batch.pk for batch in rows]


def _insert_pending(job: ClassificationJob, document_ids: list[int], batch_id: int | None) -> None:
    """A pending result row per document (100,000 of them in a second or two on PostgreSQL)."""
    if connection.vendor != "postgresql":
        ClassificationResult.objects.bulk_create(
            (
                ClassificationResult(job=job, document_id=pk, batch_id=batch_id)
                for pk in document_ids
            ),
            batch_size=2000,
        )
        return
    table = connection.ops.quote_name(ClassificationResult._meta.db_table)
    sql = (
        f"INSERT INTO {table} (job_id, document_id, batch_id, outcome, label, rationale, "  # noqa: S608
        "key_phrases, raw_text, error, errored_count, expired_count, updated_at) "
        "SELECT %s, unnest(%s::bigint[]), %s, 'pending', '', '', '[]'::jsonb, '', '', 0, 0, %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [job.pk, document_ids, batch_id, _now()])


def classification_job_plan(*, job_id: int) -> None:
    """Turn a started job into result rows and batch rows (or the realtime runner's queue).

    One transaction: a worker killed half way leaves nothing, and beat plans the job again.
    """
    with transaction.atomic():
        job = (
            ClassificationJob.objects.select_for_update()
            .select_related("document_set")
            .get(pk=job_id)
        )
        if job.planned_at is not None or job.status != JobStatus.PENDING:
            return
        documents = job_documents(
            document_set=job.document_set, document_filter=job.document_filter
        )
        now = _now()
        if job.mode == ClassificationJob.Mode.REALTIME:
            ids = list(documents.order_by("pk").values_list("pk", flat=True))
            _insert_pending(job, ids, None)
            batch_ids: list[int] = []
        else:
            prompt = JobPrompt.for_job(job)
            try:
                groups = _split(prompt, job.pk, _document_rows(documents))
            except ValidationError as error:
                job.error = " ".join(error.messages)
                _finish(job, JobStatus.FAILED, now)
                return
            ids = [pk for group, _size in groups for pk in group]
            batch_ids = _create_batches(
                job, groups, kind=ClassificationBatch.Kind.INITIAL, round_number=0
            )
        job.document_count = len(ids)
        job.planned_at = now
        job.status = JobStatus.RUNNING if ids else JobStatus.COMPLETED
        if not ids:
            job.error = "No ready documents matched when the job started."
            job.finished_at = now
        job.next_check_at = now + _seconds(settings.CLASSIFICATION_RECHECK_SECONDS)
        job.save(
            update_fields=[
                "document_count", "planned_at", "status", "error", "finished_at", "next_check_at",
            ]
        )  # fmt: skip
        if job.mode == ClassificationJob.Mode.REALTIME and ids:
            _enqueue("classification_realtime_run", job.pk)
        for batch_id in batch_ids:
            _enqueue("classification_batch_submit", batch_id)


# --- submission and its recovery ----------------------------------------------------------------


def _may_have_created(error: ClaudeError) -> bool:
    """Could the create have reached the API although we got no answer? Refusals before the
    call (budgets, limits, breaker) and 4xx answers prove it did not."""
    if isinstance(error, BudgetExceeded | RateLimited | BreakerOpen | ClaudeNotConfigured):
        return False
    if isinstance(error, ClaudeUnavailable | InvalidResponse):
        return error.status is None or error.status >= 500 or error.status in (408, 409)
    return False


def _batch_requests(batch: ClassificationBatch, prompt: JobPrompt) -> list[dict[str, Any]]:
    job_id = batch.job_id
    rows = (
        Document.objects.filter(
            classification_results__job_id=job_id, classification_results__batch_id=batch.pk
        )
        .order_by("pk")
        .values_list("pk", "filename", "text")
        .iterator(chunk_size=2000)
    )
    return [
        prompt.request(custom_id=custom_id(job_id, pk), title=title, text=text)
        for pk, title, text in rows
    ]


def _expected_custom_ids(batch: ClassificationBatch) -> set[str]:
    ids = ClassificationResult.objects.filter(job_id=batch.job_id, batch_id=batch.pk).values_list(
        "document_id", flat=True
    )
    return {custom_id(batch.job_id, pk) for pk in ids.iterator(chunk_size=5000)}


def _fail_batch(batch: ClassificationBatch, message: str) -> None:
    """A batch that cannot be sent: its documents end `errored` with the reason, which the job
    page shows too."""
    with transaction.atomic():
        ClassificationBatch.objects.filter(pk=batch.pk).update(
            status=BatchStatus.FAILED, error=message[:2000], next_check_at=None
        )
        ClassificationJob.objects.filter(pk=batch.job_id, error="").update(
            error=f"A batch of {batch.request_count} documents could not be sent: {message}"[:2000]
        )
        ClassificationResult.objects.filter(batch_id=batch.pk).exclude(
            outcome__in=(Outcome.SUCCEEDED, Outcome.INVALID)
        ).update(outcome=Outcome.ERRORED, error=message[:2000], updated_at=_now())
        _enqueue("classification_job_advance", batch.job_id)


def classification_batch_submit(*, batch_id: int) -> None:
    """Send one planned batch. Claimed by one conditional UPDATE (`planned -> submitting`, with
    its request count and the window its API `created_at` will fall in), so a redelivered task
    sends nothing twice. The requests are built before the claim: between the claim and the
    call there is nothing slow, so the window stays a true bound."""
    batch = ClassificationBatch.objects.select_related("job").get(pk=batch_id)
    job = batch.job
    if batch.status != BatchStatus.PLANNED or job.status != JobStatus.RUNNING:
        if batch.status in (BatchStatus.SUBMITTING, BatchStatus.CONFIRMING):
            classification_batch_recover(batch_id=batch_id)
        elif batch.status == BatchStatus.PLANNED and job.status == JobStatus.CANCELING:
            _enqueue("classification_job_advance", job.pk)
        return
    requests = _batch_requests(batch, JobPrompt.for_job(job))
    if not requests:  # every document was deleted since planning
        ClassificationBatch.objects.filter(pk=batch.pk, status=BatchStatus.PLANNED).update(
            status=BatchStatus.INGESTED, request_count=0, ingested_at=_now(), next_check_at=None
        )
        _enqueue("classification_job_advance", job.pk)
        return
    door.base_url  # noqa: B018 - builds this process's client before the claim, not after
    now = _now()
    stale = settings.CLASSIFICATION_SUBMIT_STALE_SECONDS
    claimed = (
        ClassificationBatch.objects.filter(pk=batch_id, status=BatchStatus.PLANNED)
        .filter(job__status=JobStatus.RUNNING)
        .update(
            status=BatchStatus.SUBMITTING,
            request_count=len(requests),
            window_start=now - _seconds(settings.CLASSIFICATION_CLOCK_SKEW_SECONDS),
            window_end=now + _seconds(stale),
            submit_attempts=F("submit_attempts") + 1,
            # Until then the claimant may still be in its create call: nobody recovers it.
            next_check_at=now + _seconds(stale),
        )
    )
    if not claimed:
        return
    batch.refresh_from_db()
    try:
        created = door.batch_create(_ctx(job), requests, model=job.model_id)
    except ClaudeError as error:
        del requests
        _after_submit_error(batch, error)
        return
    del requests
    _store_batch_id(batch, created.id, created.processing_status)


def _after_submit_error(batch: ClassificationBatch, error: ClaudeError) -> None:
    message = f"{error.kind}: {error}"[:2000]
    if _may_have_created(error):
        # The create may have landed: look for it instead of sending it again.
        ClassificationBatch.objects.filter(pk=batch.pk).update(error=message)
        log.warning(
            "batch create answer lost; looking for the batch",
            extra={"classification_batch": batch.pk, "error": message[:200]},
        )
        classification_batch_recover(batch_id=batch.pk, lost_answer=True)
        return
    attempts = batch.submit_attempts  # this one included
    if attempts >= settings.CLASSIFICATION_SUBMIT_MAX_ATTEMPTS or (
        error.status is not None and 400 <= error.status < 500 and error.status != 429
    ):
        _fail_batch(batch, message)
        return
    delay = error.retry_after or settings.CLASSIFICATION_POLL_MIN_SECONDS * 2**attempts
    ClassificationBatch.objects.filter(pk=batch.pk, status=BatchStatus.SUBMITTING).update(
        status=BatchStatus.PLANNED,
        error=message,
        next_check_at=_now() + _seconds(min(delay, settings.CLASSIFICATION_POLL_MAX_SECONDS)),
    )


def _store_batch_id(batch: ClassificationBatch, api_batch_id: str, api_status: str) -> None:
    now = _now()
    try:
        stored = ClassificationBatch.objects.filter(
            pk=batch.pk,
            status__in=(BatchStatus.SUBMITTING, BatchStatus.CONFIRMING),
            api_batch_id="",
        ).update(
            api_batch_id=api_batch_id,
            status=BatchStatus.SUBMITTED,
            api_status=api_status,
            submitted_at=now,
            candidates=[],
            error="",
            next_check_at=now + _seconds(settings.CLASSIFICATION_POLL_MIN_SECONDS),
        )
    except IntegrityError:  # a recovery adopted this very batch for the row first
        stored = 0
    if stored:
        return
    batch.refresh_from_db()
    if batch.api_batch_id != api_batch_id:
        # The row got another batch meanwhile: this one is an extra.
        _record_extra(batch, api_batch_id, cancel=True)


def _record_extra(batch: ClassificationBatch, api_batch_id: str, *, cancel: bool) -> None:
    """A second batch for the same row: canceled if still open, never ingested. Its lines are
    still read once it ends, so the ledger books what the API charged for the part that ran."""
    if ClassificationBatch.objects.filter(api_batch_id=api_batch_id).exists():
        return
    try:
        ClassificationBatch.objects.create(
            job_id=batch.job_id,
            kind=ClassificationBatch.Kind.EXTRA,
            status=BatchStatus.DISCARDING,
            round=batch.round,
            request_count=batch.request_count,
            api_batch_id=api_batch_id,
            duplicate_of=batch,
            submitted_at=_now(),
            next_check_at=_now(),
        )
    except IntegrityError:
        return
    log.warning(
        "extra batch found; canceling it",
        extra={"classification_batch": batch.pk, "batch_id": api_batch_id},
    )
    if cancel:
        try:
            door.batch_cancel(api_batch_id)
        except ClaudeError as error:
            log.info("extra batch not canceled", extra={"error": str(error)[:200]})


def _find_candidates(batch: ClassificationBatch) -> list[tuple[str, dt.datetime]]:
    """Batches created in the row's window with its request count that no row has claimed."""
    assert batch.window_start is not None and batch.window_end is not None
    found: list[tuple[str, dt.datetime]] = []
    after: str | None = None
    while True:
        page = door.batch_list(limit=100, after_id=after)
        for remote in page:
            created = remote.created_at
            if batch.window_start <= created <= batch.window_end:
                counts = remote.request_counts
                total = (
                    counts.processing + counts.succeeded + counts.errored
                    + counts.canceled + counts.expired
                )  # fmt: skip
                if total == batch.request_count:
                    found.append((remote.id, created))
        if len(page) < 100 or page[-1].created_at < batch.window_start:
            break
        after = page[-1].id
    known = set(
        ClassificationBatch.objects.filter(api_batch_id__in=[i for i, _ in found]).values_list(
            "api_batch_id", flat=True
        )
    )
    return sorted(((i, c) for i, c in found if i not in known), key=lambda ic: ic[1])


def classification_batch_recover(*, batch_id: int, lost_answer: bool = False) -> None:
    """A row `submitting` without an id (the create's answer was lost, or its worker died), or
    `confirming` its candidates. Never sends the batch again while it may exist."""
    batch = ClassificationBatch.objects.select_related("job").get(pk=batch_id)
    now = _now()
    if batch.status == BatchStatus.SUBMITTING and not batch.api_batch_id:
        if not lost_answer and batch.window_end and now < batch.window_end:
            return  # its claimant may still be inside the create call
        try:
            candidates = _find_candidates(batch)
        except ClaudeError as error:
            _recheck_later(batch, f"listing batches failed: {error}")
            return
        if candidates:
            ClassificationBatch.objects.filter(
                pk=batch.pk, status=BatchStatus.SUBMITTING, api_batch_id=""
            ).update(
                status=BatchStatus.CONFIRMING,
                candidates=[i for i, _ in candidates],
                next_check_at=now,
            )
            batch.refresh_from_db()
        else:
            settle = batch.window_end + _seconds(settings.CLASSIFICATION_LIST_LAG_SECONDS)
            if now >= settle:
                # Whatever the lost attempt sent would be listed by now: it never landed.
                ClassificationBatch.objects.filter(
                    pk=batch.pk, status=BatchStatus.SUBMITTING, api_batch_id=""
                ).update(
                    status=BatchStatus.PLANNED,
                    next_check_at=now,
                    error="The lost attempt created no batch; sending it again.",
                )
                _enqueue("classification_batch_submit", batch.pk)
            else:
                ClassificationBatch.objects.filter(pk=batch.pk).update(next_check_at=settle)
            return
    if batch.status == BatchStatus.CONFIRMING and not batch.api_batch_id:
        _confirm(batch)


def _recheck_later(batch: ClassificationBatch, message: str) -> None:
    delay = min(
        settings.CLASSIFICATION_POLL_MIN_SECONDS * 1.5 ** min(batch.polls, 20),
        settings.CLASSIFICATION_POLL_MAX_SECONDS,
    )
    ClassificationBatch.objects.filter(pk=batch.pk).update(
        polls=F("polls") + 1, error=message[:2000], next_check_at=_now() + _seconds(delay)
    )


def _overlapping_unresolved(batch: ClassificationBatch) -> bool:
    """Another row (any job) also looking for a batch of this size in an overlapping window:
    then a candidate may be theirs, and only its custom_ids can tell."""
    return (
        ClassificationBatch.objects.filter(
            status__in=(BatchStatus.SUBMITTING, BatchStatus.CONFIRMING),
            api_batch_id="",
            request_count=batch.request_count,
            window_start__lte=batch.window_end,
            window_end__gte=batch.window_start,
        )
        .exclude(pk=batch.pk)
        .exists()
    )


def _confirm(batch: ClassificationBatch) -> None:
    remote: dict[str, Any] = {}
    for candidate in batch.candidates:
        try:
            remote[candidate] = door.batch_retrieve(candidate)
        except ClaudeError as error:
            if error.status == 404:
                continue
            _recheck_later(batch, f"checking candidate {candidate} failed: {error}")
            return
    ordered = sorted(remote.values(), key=lambda r: r.created_at)
    if any(r.processing_status != "ended" for r in ordered):
        if len(ordered) > 1 and not _overlapping_unresolved(batch):
            # Every candidate is this row's: keep the oldest, cancel the copies before they run.
            for extra in ordered[1:]:
                _record_extra(batch, extra.id, cancel=extra.processing_status == "in_progress")
            ClassificationBatch.objects.filter(pk=batch.pk).update(candidates=[ordered[0].id])
        _recheck_later(batch, "waiting for the candidate batch to end before confirming it")
        return
    expected = _expected_custom_ids(batch)
    adopted = ""
    ctx = _ctx(batch.job)
    for candidate in ordered:
        try:
            seen = {line.custom_id for line in door.batch_results(ctx, candidate.id)}
        except ClaudeError as error:
            _recheck_later(batch, f"reading candidate {candidate.id} failed: {error}")
            return
        if seen != expected:
            continue  # another row's (or someone else's) batch
        if adopted:
            _record_extra(batch, candidate.id, cancel=False)
            continue
        try:
            with transaction.atomic():
                adopted_rows = ClassificationBatch.objects.filter(
                    pk=batch.pk, status=BatchStatus.CONFIRMING, api_batch_id=""
                ).update(
                    api_batch_id=candidate.id,
                    status=BatchStatus.ENDED,
                    api_status="ended",
                    submitted_at=candidate.created_at,
                    ended_at=candidate.ended_at or _now(),
                    candidates=[],
                    error="",
                    next_check_at=_now() + _seconds(settings.CLASSIFICATION_RECHECK_SECONDS),
                )
                if adopted_rows:
                    _enqueue("classification_batch_ingest", batch.pk)
        except IntegrityError:
            continue
        if not adopted_rows:
            return
        adopted = candidate.id
        log.warning(
            "lost batch confirmed and adopted",
            extra={"classification_batch": batch.pk, "batch_id": candidate.id},
        )
    if not adopted:
        ClassificationBatch.objects.filter(
            pk=batch.pk, status=BatchStatus.CONFIRMING, api_batch_id=""
        ).update(
            status=BatchStatus.PLANNED,
            candidates=[],
            next_check_at=_now(),
            error="No listed batch carried this batch's requests; sending it again.",
        )
        _enqueue("classification_batch_submit", batch.pk)


# --- polling ------------------------------------------------------------------------------------


def classification_batch_poll(*, batch_id: int) -> None:
    """One look at an open batch; the next look is beat's, later each time (backoff)."""
    batch = ClassificationBatch.objects.select_related("job").get(pk=batch_id)
    if batch.status in (BatchStatus.SUBMITTING, BatchStatus.CONFIRMING):
        classification_batch_recover(batch_id=batch_id)
        return
    if batch.status == BatchStatus.PLANNED:
        classification_batch_submit(batch_id=batch_id)
        return
    if batch.status == BatchStatus.ENDED:
        _enqueue("classification_batch_ingest", batch_id)
        return
    if batch.status not in (BatchStatus.SUBMITTED, BatchStatus.DISCARDING):
        return
    try:
        remote = door.batch_retrieve(batch.api_batch_id)
        if remote.processing_status == "in_progress" and (
            batch.job.status == JobStatus.CANCELING or batch.kind == batch.Kind.EXTRA
        ):
            remote = door.batch_cancel(batch.api_batch_id)
    except ClaudeError as error:
        _recheck_later(batch, f"polling failed: {error}")
        return
    if remote.processing_status != "ended":
        delay = min(
            settings.CLASSIFICATION_POLL_MIN_SECONDS
            * settings.CLASSIFICATION_POLL_BACKOFF ** min(batch.polls, 30),
            settings.CLASSIFICATION_POLL_MAX_SECONDS,
        )
        ClassificationBatch.objects.filter(pk=batch.pk).update(
            polls=F("polls") + 1,
            api_status=remote.processing_status,
            error="",
            next_check_at=_now() + _seconds(delay),
        )
        return
    if batch.status == BatchStatus.DISCARDING:
        _discard(batch)
        return
    with transaction.atomic():
        moved = ClassificationBatch.objects.filter(
            pk=batch.pk, status=BatchStatus.SUBMITTED
        ).update(
            status=BatchStatus.ENDED,
            api_status="ended",
            ended_at=remote.ended_at or _now(),
            error="",
            next_check_at=_now() + _seconds(settings.CLASSIFICATION_RECHECK_SECONDS),
        )
        if moved:
            _enqueue("classification_batch_ingest", batch.pk)


def _discard(batch: ClassificationBatch) -> None:
    """An extra batch ended: read its lines once (the door books what ran), store nothing."""
    try:
        for _line in door.batch_results(_ctx(batch.job), batch.api_batch_id):
            pass
    except ClaudeError as error:
        _recheck_later(batch, f"reading the extra batch failed: {error}")
        return
    with transaction.atomic():
        ClassificationBatch.objects.filter(pk=batch.pk).update(
            status=BatchStatus.DISCARDED, api_status="ended", ended_at=_now(), next_check_at=None
        )
        _enqueue("classification_job_advance", batch.job_id)


# --- ingestion ----------------------------------------------------------------------------------

_RANK_SQL = (
    "CASE {t}.outcome WHEN 'succeeded' THEN 2 WHEN 'invalid' THEN 2 WHEN 'pending' THEN 0 "
    "ELSE 1 END"
)
_COLUMNS = (
    "job_id", "document_id", "batch_id", "answered_by_id", "outcome", "label", "confidence",
    "rationale", "key_phrases", "raw_text", "error", "errored_count", "expired_count",
    "updated_at",
)  # fmt: skip


def _upsert_sql(source: str) -> str:
    """INSERT ... <source> ON CONFLICT ... WHERE: the forward-only rule, in one statement."""
    table = connection.ops.quote_name(ClassificationResult._meta.db_table)
    rank_new = _RANK_SQL.format(t="excluded")
    rank_old = _RANK_SQL.format(t=table)
    changed = ", ".join(
        f"{c} = excluded.{c}"
        for c in (
            "answered_by_id",
            "outcome",
            "label",
            "confidence",
            "rationale",
            "key_phrases",
            "raw_text",
            "error",
            "updated_at",
        )  # fmt: skip
    )
    # Only constant identifiers and placeholders are formatted in; values are parameters.
    return (
        f"INSERT INTO {table} ({', '.join(_COLUMNS)}) {source} "  # noqa: S608
        f"ON CONFLICT (job_id, document_id) DO UPDATE SET {changed}, "
        f"errored_count = {table}.errored_count + excluded.errored_count, "
        f"expired_count = {table}.expired_count + excluded.expired_count "
        f"WHERE {rank_new} > {rank_old} OR ({rank_new} = {rank_old} AND "
        f"excluded.answered_by_id > COALESCE({table}.answered_by_id, 0))"
    )


_PG_SOURCE = (
    "SELECT j, d, b, b, o, l, c, r, k::jsonb, raw, e, ec, xc, %s FROM unnest("
    "%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::float8[], "
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::int[]"
    ") AS x(j, d, b, o, l, c, r, k, raw, e, ec, xc)"
)


def results_upsert(rows: list[dict[str, Any]]) -> int:
    """Insert or update result rows (one per (job, document)) from batch lines.

    An existing row changes only when the new line ranks higher (an answer beats a failure,
    a failure beats pending) or ranks the same and comes from a later batch. So a line read
    twice changes nothing, a retry's answer replaces the error, and a late error line never
    overwrites an answer. PostgreSQL gets the rows as arrays in one short statement; other
    databases (SQLite) one row per execution of the same statement.
    """
    if not rows:
        return 0
    columns: list[list[Any]] = [[] for _ in range(12)]
    for row in rows:
        values = (
            row["job_id"], row["document_id"], row["batch_id"], row["outcome"],
            row.get("label", ""), row.get("confidence"), row.get("rationale", ""),
            json.dumps(row.get("key_phrases") or []), row.get("raw_text", ""),
            row.get("error", ""), 1 if row["outcome"] == Outcome.ERRORED else 0,
            1 if row["outcome"] == Outcome.EXPIRED else 0,
        )  # fmt: skip
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    now = _now()
    if connection.vendor == "postgresql":
        import psycopg

        # A server-side-binding cursor on Django's own connection (same transaction): the
        # arrays travel as parameters instead of being quoted into the SQL text.
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(_upsert_sql(_PG_SOURCE).replace("%s", "%b"), [now, *columns])
            return cursor.rowcount
    with connection.cursor() as cursor:
        placeholders = ", ".join(["%s"] * len(_COLUMNS))
        stamp = connection.ops.adapt_datetimefield_value(now)
        cursor.executemany(
            _upsert_sql(f"VALUES ({placeholders})"),
            [(j, d, b, b, *rest, stamp) for j, d, b, *rest in zip(*columns, strict=True)],
        )
        return cursor.rowcount


def _answer_fields(value: dict[str, Any]) -> dict[str, Any]:
    phrases = value.get("key_phrases") or []
    return {
        "label": str(value.get("label", ""))[:100],
        "confidence": value.get("confidence"),
        "rationale": str(value.get("rationale") or ""),
        "key_phrases": [str(p)[:200] for p in phrases][:10],
    }


def result_row(
    *, job_id: int, document_id: int, batch_id: int | None, kind: str, message: Any,
    error: str, schema: dict,
) -> dict[str, Any]:  # fmt: skip
    """A result row (for `results_upsert`) from one batch line or live reply."""
    row: dict[str, Any] = {
        "job_id": job_id, "document_id": document_id, "batch_id": batch_id, "label": "",
        "confidence": None, "rationale": "", "key_phrases": [], "raw_text": "", "error": "",
    }  # fmt: skip
    if kind == "succeeded":
        parsed = structured_parse(message, schema)
        if parsed.ok:
            row.update(outcome=Outcome.SUCCEEDED, **_answer_fields(parsed.value))
        else:
            # Stored as it came, never coerced into a label.
            row.update(outcome=Outcome.INVALID, raw_text=parsed.raw_text, error=parsed.error or "")
    elif kind in (Outcome.ERRORED, Outcome.EXPIRED, Outcome.CANCELED):
        row.update(outcome=kind, error=error)
    else:
        row.update(outcome=Outcome.ERRORED, error=f"unknown result type {kind!r}")
    return row


def classification_batch_ingest(*, batch_id: int) -> None:
    """Store an ended batch's lines, in chunks, from where the last run stopped. Stops after
    `CLASSIFICATION_INGEST_MAX_SECONDS` and continues in a new task (inside the visibility
    timeout); running twice at once is harmless (upserts, the door books lines once)."""
    batch = ClassificationBatch.objects.select_related("job").get(pk=batch_id)
    if batch.status != BatchStatus.ENDED:
        return
    job = batch.job
    schema = JobPrompt.for_job(job).schema
    skip = batch.lines_ingested
    chunk_size = settings.CLASSIFICATION_INGEST_CHUNK
    deadline = time.monotonic() + settings.CLASSIFICATION_INGEST_MAX_SECONDS
    pending: list[dict[str, Any]] = []
    seen = 0
    lines = door.batch_results(_ctx(job), batch.api_batch_id)
    try:
        for line in lines:
            seen += 1
            if seen <= skip:
                continue
            ids = parse_custom_id(line.custom_id)
            if ids is None or ids[0] != job.pk:
                log.warning("foreign line in batch", extra={"custom_id": line.custom_id[:64]})
                continue
            pending.append(
                result_row(
                    job_id=job.pk,
                    document_id=ids[1],
                    batch_id=batch.pk,
                    kind=line.type,
                    message=line.message,
                    error=line.error,
                    schema=schema,
                )  # fmt: skip
            )
            if len(pending) >= chunk_size:
                _store_chunk(batch, pending, seen)
                pending = []
                if time.monotonic() > deadline:
                    _enqueue("classification_batch_ingest", batch.pk)
                    return
    except ClaudeError as error:
        _store_chunk(batch, pending, seen)
        _recheck_later(batch, f"reading results failed: {error}")
        return
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()
    _store_chunk(batch, pending, seen)
    with transaction.atomic():
        done = ClassificationBatch.objects.filter(pk=batch.pk, status=BatchStatus.ENDED).update(
            status=BatchStatus.INGESTED, ingested_at=_now(), next_check_at=None, error=""
        )
        if done:
            _enqueue("classification_job_advance", job.pk)


def _store_chunk(batch: ClassificationBatch, rows: list[dict[str, Any]], seen: int) -> None:
    if not rows and seen <= batch.lines_ingested:
        return
    with transaction.atomic():
        results_upsert(rows)
        ClassificationBatch.objects.filter(pk=batch.pk).update(
            lines_ingested=Greatest(F("lines_ingested"), seen),
            # A live ingester keeps beat from starting a second one.
            next_check_at=_now() + _seconds(settings.CLASSIFICATION_RECHECK_SECONDS),
        )
    batch.lines_ingested = max(batch.lines_ingested, seen)


# --- follow-ups and the end of a job ------------------------------------------------------------


def classification_job_advance(*, job_id: int) -> None:
    """When every batch of the job is done: retry errored lines once, resubmit expired ones
    (a bounded number of times), and otherwise finish the job."""
    with transaction.atomic():
        job = ClassificationJob.objects.select_for_update().get(pk=job_id)
        now = _now()
        if not job.is_open:
            return
        if job.planned_at is None:
            if job.status == JobStatus.CANCELING:  # canceled before it was planned
                _finish(job, JobStatus.CANCELED, now)
            return
        if job.mode == ClassificationJob.Mode.REALTIME:
            _advance_realtime(job, now)
            return
        # Extras count too: a job is finished once what it was charged for is in the ledger.
        busy = job.batches.exclude(status__in=ClassificationBatch.DONE_STATUSES).exists()
        if busy:
            return
        results = ClassificationResult.objects.filter(job=job)
        if job.status == JobStatus.CANCELING:
            results.filter(outcome=Outcome.PENDING).update(outcome=Outcome.CANCELED, updated_at=now)
            _finish(job, JobStatus.CANCELED, now)
            return
        # A line the API never returned: count it as an error (and so retry it once).
        results.filter(outcome=Outcome.PENDING).update(
            outcome=Outcome.ERRORED,
            error="The batch returned no line for this document.",
            errored_count=F("errored_count") + 1,
            updated_at=now,
        )
        in_job = Document.objects.filter(classification_results__job=job)
        retry = in_job.filter(
            classification_results__outcome=Outcome.ERRORED,
            classification_results__errored_count=1,
        ).exclude(classification_results__batch__status=BatchStatus.FAILED)
        resubmit = in_job.filter(
            classification_results__outcome=Outcome.EXPIRED,
            classification_results__expired_count__lte=(
                settings.CLASSIFICATION_MAX_EXPIRED_RESUBMITS
            ),
        )
        prompt = JobPrompt.for_job(job)
        round_number = (job.batches.aggregate(r=Max("round"))["r"] or 0) + 1
        batch_ids: list[int] = []
        for kind, documents in (
            (ClassificationBatch.Kind.RETRY, retry),
            (ClassificationBatch.Kind.RESUBMIT, resubmit),
        ):
            groups = _split(prompt, job.pk, _document_rows(documents))
            if groups:
                batch_ids += _create_batches(job, groups, kind=kind, round_number=round_number)
        if not batch_ids:
            _finish(job, JobStatus.COMPLETED, now)
            return
        for batch_id in batch_ids:
            _enqueue("classification_batch_submit", batch_id)


def _finish(job: ClassificationJob, status: str, now: dt.datetime) -> None:
    job.status = status
    job.finished_at = now
    job.next_check_at = None
    job.runner_lease_until = None
    job.save(update_fields=["status", "finished_at", "next_check_at", "runner_lease_until"])
    log.info("classification job finished", extra={"job": job.pk, "status": status})


def _advance_realtime(job: ClassificationJob, now: dt.datetime) -> None:
    pending = ClassificationResult.objects.filter(job=job, outcome=Outcome.PENDING)
    if job.status == JobStatus.CANCELING:
        if job.runner_lease_until and job.runner_lease_until > now:
            return  # the runner stops at its next document and calls back
        pending.update(outcome=Outcome.CANCELED, updated_at=now)
        _finish(job, JobStatus.CANCELED, now)
        return
    if not pending.exists():
        _finish(job, JobStatus.COMPLETED, now)


# --- realtime mode ------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def classification_realtime_run(*, job_id: int) -> None:
    """Classify up to `CLASSIFICATION_REALTIME_DOCS_PER_RUN` pending documents with live calls,
    `CLASSIFICATION_REALTIME_CONCURRENCY` at a time, then hand over to the next run. One runner
    per job (a lease renewed as documents finish); an error is retried once, in the next run."""
    now = _now()
    lease = settings.CLASSIFICATION_REALTIME_LEASE_SECONDS
    claimed = (
        ClassificationJob.objects.filter(
            pk=job_id, mode=ClassificationJob.Mode.REALTIME, status=JobStatus.RUNNING
        )
        .filter(Q(runner_lease_until__isnull=True) | Q(runner_lease_until__lt=now))
        .update(runner_lease_until=now + _seconds(lease))
    )
    if not claimed:
        return
    job = ClassificationJob.objects.get(pk=job_id)
    prompt = JobPrompt.for_job(job)
    ctx = _ctx(job)
    limit = settings.CLASSIFICATION_REALTIME_DOCS_PER_RUN
    todo = list(
        Document.objects.filter(
            classification_results__job=job, classification_results__outcome=Outcome.PENDING
        )
        .order_by("pk")
        .values_list("pk", "filename", "text")[:limit]
    )
    work: queue.SimpleQueue[tuple[int, str, str]] = queue.SimpleQueue()
    for item in todo:
        work.put(item)
    stop = threading.Event()
    pause: list[float] = []

    def classify_one(pk: int, title: str, text: str) -> None:
        try:
            message = door.create(ctx, **prompt.params(title=title, text=text))
        except (RateLimited, BudgetExceeded, BreakerOpen, ClaudeNotConfigured) as error:
            pause.append(error.retry_after or settings.CLASSIFICATION_POLL_MIN_SECONDS)
            raise _Stop from error
        except ClaudeError as error:
            ClassificationResult.objects.filter(
                job=job, document_id=pk, outcome=Outcome.PENDING
            ).update(
                errored_count=F("errored_count") + 1,
                error=f"{error.kind}: {error}"[:2000],
                updated_at=_now(),
            )
            ClassificationResult.objects.filter(
                job=job, document_id=pk, outcome=Outcome.PENDING, errored_count__gte=2
            ).update(outcome=Outcome.ERRORED)
            return
        row = result_row(
            job_id=job.pk, document_id=pk, batch_id=None, kind="succeeded", message=message,
            error="", schema=prompt.schema,
        )  # fmt: skip
        fields = {k: v for k, v in row.items() if k not in ("job_id", "document_id", "batch_id")}
        ClassificationResult.objects.filter(
            job=job, document_id=pk, outcome=Outcome.PENDING
        ).update(**fields, updated_at=_now())

    def worker() -> None:
        try:
            while not stop.is_set():
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    classify_one(*item)
                except _Stop:
                    stop.set()
                except Exception:
                    log.exception("realtime classification failed", extra={"job": job.pk})
                    stop.set()
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, name=f"classify-{job.pk}-{i}", daemon=True)
        for i in range(max(1, min(settings.CLASSIFICATION_REALTIME_CONCURRENCY, len(todo))))
    ]
    for thread in threads:
        thread.start()
    last_renew = time.monotonic()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=0.5)
        if time.monotonic() - last_renew > min(5.0, lease / 3):
            last_renew = time.monotonic()
            status = (
                ClassificationJob.objects.filter(pk=job.pk).values_list("status", flat=True).first()
            )
            if status != JobStatus.RUNNING:
                stop.set()
            ClassificationJob.objects.filter(pk=job.pk).update(
                runner_lease_until=_now() + _seconds(lease)
            )
    more = ClassificationResult.objects.filter(job=job, outcome=Outcome.PENDING).exists()
    delay = max(pause) if pause else 0.0
    ClassificationJob.objects.filter(pk=job.pk).update(
        runner_lease_until=None,
        next_check_at=_now() + _seconds(delay or settings.CLASSIFICATION_RECHECK_SECONDS),
    )
    with transaction.atomic():
        current = ClassificationJob.objects.get(pk=job.pk)
        if more and current.status == JobStatus.RUNNING and not pause:
            _enqueue("classification_realtime_run", job.pk)
        else:
            _enqueue("classification_job_advance", job.pk)


# --- beat ---------------------------------------------------------------------------------------


def _claim_due(queryset: QuerySet, limit: int = 500) -> list[int]:
    """Ids of due rows, each given a lease so the next tick does not send it again."""
    now = _now()
    due = queryset.filter(Q(next_check_at__isnull=True) | Q(next_check_at__lte=now))
    ids = list(due.order_by("next_check_at").values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    lease = now + _seconds(settings.CLASSIFICATION_RECHECK_SECONDS)
    model = queryset.model
    claimed = model.objects.filter(pk__in=ids).filter(
        Q(next_check_at__isnull=True) | Q(next_check_at__lte=now)
    )
    ids = list(claimed.values_list("pk", flat=True))
    model.objects.filter(pk__in=ids).update(next_check_at=lease)
    return ids


def classification_tick() -> dict[str, int]:
    """Beat's re-check: whatever is due gets its task (planning, submitting, recovering,
    polling, ingesting, advancing). Everything a killed worker left half done resumes here."""
    sent: dict[str, int] = {}

    def send(name: str, task: str, ids: list[int]) -> None:
        for pk in ids:
            _enqueue(task, pk)
        if ids:
            sent[name] = len(ids)

    # No transaction around the whole tick: each claim is one short statement, so the tick
    # never holds locks across tables (and never blocks a flush or a migration).
    batches = ClassificationBatch.objects
    send(
        "plan",
        "classification_job_plan",
        _claim_due(ClassificationJob.objects.filter(status=JobStatus.PENDING)),
    )
    send(
        "submit",
        "classification_batch_submit",
        _claim_due(batches.filter(status=BatchStatus.PLANNED)),
    )
    send(
        "recover",
        "classification_batch_recover",
        _claim_due(batches.filter(status__in=(BatchStatus.SUBMITTING, BatchStatus.CONFIRMING))),
    )
    send(
        "poll",
        "classification_batch_poll",
        _claim_due(batches.filter(status__in=(BatchStatus.SUBMITTED, BatchStatus.DISCARDING))),
    )
    send(
        "ingest",
        "classification_batch_ingest",
        _claim_due(batches.filter(status=BatchStatus.ENDED)),
    )
    open_jobs = ClassificationJob.objects.filter(
        status__in=(JobStatus.RUNNING, JobStatus.CANCELING)
    )
    send(
        "realtime",
        "classification_realtime_run",
        _claim_due(
            open_jobs.filter(mode=ClassificationJob.Mode.REALTIME, status=JobStatus.RUNNING)
            .filter(Q(runner_lease_until__isnull=True) | Q(runner_lease_until__lt=_now()))
        ),
    )  # fmt: skip
    send(
        "advance",
        "classification_job_advance",
        _claim_due(
            open_jobs.exclude(mode=ClassificationJob.Mode.REALTIME, status=JobStatus.RUNNING)
        ),
    )
    return sent
