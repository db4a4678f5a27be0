"""Classification jobs, the API batches they send, and one result per document.

The exactly-once machinery is in the states: a batch row is `submitting` (with its request count
and a time window) before the API call and gets its id after; a result row is unique per
(job, document) and only ever moves forward (see `services.results_upsert`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

__all__ = ["ClassificationBatch", "ClassificationJob", "ClassificationResult"]

MONEY = {"max_digits": 20, "decimal_places": 12}


class ClassificationJob(models.Model):
    """Classify the ready documents of a set (or a filter of it) into one of a few labels."""

    class Mode(models.TextChoices):
        BATCH = "batch", "Batch (half price)"
        REALTIME = "realtime", "Realtime"

    class Status(models.TextChoices):
        PENDING = "pending", "Starting"
        RUNNING = "running", "Running"
        CANCELING = "canceling", "Canceling"
        COMPLETED = "completed", "Completed"
        CANCELED = "canceled", "Canceled"
        FAILED = "failed", "Failed"

    EXTRA_FIELDS = ("confidence", "rationale", "key_phrases")
    OPEN_STATUSES = (Status.PENDING, Status.RUNNING, Status.CANCELING)

    document_set = models.ForeignKey(
        "documents.DocumentSet", on_delete=models.CASCADE, related_name="classification_jobs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="classification_jobs",
    )
    # [{"name": "invoice", "description": "A bill asking for payment"}, ...]
    labels = models.JSONField()
    instructions = models.TextField()
    model_id = models.CharField(max_length=100)
    # A subset of EXTRA_FIELDS the model fills in besides the label.
    extra_fields = models.JSONField(default=list, blank=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.BATCH)
    # Which documents of the set: {"search": "...", "media_type": "..."}; empty is all ready ones.
    document_filter = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    document_count = models.PositiveIntegerField(default=0)
    estimated_input_tokens = models.PositiveBigIntegerField(default=0)
    estimated_output_tokens = models.PositiveBigIntegerField(default=0)
    estimated_cost_usd = models.DecimalField(**MONEY, default=0)
    planned_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The realtime runner's lease (one runner per job at a time) and when beat looks next.
    runner_lease_until = models.DateTimeField(null=True, blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_check_at"], name="clsjob_status_check")]

    def __str__(self) -> str:
        return f"Job {self.pk} on {self.document_set}"

    def get_absolute_url(self) -> str:
        return reverse("documents:job-detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def label_names(self) -> list[str]:
        return [label["name"] for label in self.labels]


class ClassificationBatch(models.Model):
    """One Message Batch a job planned (or an extra one it found and must not ingest)."""

    class Kind(models.TextChoices):
        INITIAL = "initial", "Initial"
        RETRY = "retry", "Retry of errored lines"
        RESUBMIT = "resubmit", "Resubmission of expired lines"
        EXTRA = "extra", "Unconfirmed extra"

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        SUBMITTING = "submitting", "Submitting"
        CONFIRMING = "confirming", "Confirming"  # looking for a batch a lost reply created
        SUBMITTED = "submitted", "In progress"
        ENDED = "ended", "Ingesting"
        INGESTED = "ingested", "Done"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"
        DISCARDING = "discarding", "Discarding"  # an extra: canceled, waiting for it to end
        DISCARDED = "discarded", "Discarded"

    DONE_STATUSES = (Status.INGESTED, Status.FAILED, Status.CANCELED, Status.DISCARDED)

    job = models.ForeignKey(ClassificationJob, on_delete=models.CASCADE, related_name="batches")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.INITIAL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PLANNED)
    round = models.PositiveSmallIntegerField(default=0)
    request_count = models.PositiveIntegerField()
    byte_size = models.PositiveBigIntegerField(default=0)
    api_batch_id = models.CharField(max_length=128, blank=True)
    # Set before the create call: the API's created_at of a batch this attempt made falls inside.
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    submit_attempts = models.PositiveSmallIntegerField(default=0)
    # Batches found in the window, waiting to end so their custom_ids can confirm one of them.
    candidates = models.JSONField(default=list, blank=True)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="extras"
    )
    lines_ingested = models.PositiveIntegerField(default=0)
    polls = models.PositiveIntegerField(default=0)
    api_status = models.CharField(max_length=20, blank=True)
    error = models.TextField(blank=True)
    next_check_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ingested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "id"]
        indexes = [models.Index(fields=["status", "next_check_at"], name="clsbatch_status_check")]
        constraints = [
            models.UniqueConstraint(
                fields=["api_batch_id"],
                condition=~Q(api_batch_id=""),
                name="clsbatch_unique_api_batch",
            )
        ]

    def __str__(self) -> str:
        return f"{self.api_batch_id or 'batch'} ({self.request_count} requests)"

    @property
    def is_done(self) -> bool:
        return self.status in self.DONE_STATUSES


class ClassificationResult(models.Model):
    """The one result of one document in one job. It only moves forward: an answer (label or
    `invalid`) is never replaced by a later failure line."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Classified"
        INVALID = "invalid", "Invalid output"
        ERRORED = "errored", "Errored"
        EXPIRED = "expired", "Expired"
        CANCELED = "canceled", "Canceled"

    job = models.ForeignKey(ClassificationJob, on_delete=models.CASCADE, related_name="results")
    document = models.ForeignKey(
        "documents.Document", on_delete=models.CASCADE, related_name="classification_results"
    )
    # The batch the document was last sent in, and the one whose line gave the current outcome.
    batch = models.ForeignKey(
        ClassificationBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    answered_by = models.ForeignKey(
        ClassificationBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    label = models.CharField(max_length=100, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    key_phrases = models.JSONField(default=list, blank=True)
    raw_text = models.TextField(blank=True)
    error = models.TextField(blank=True)
    errored_count = models.PositiveSmallIntegerField(default=0)
    expired_count = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "document"]
        constraints = [
            models.UniqueConstraint(fields=["job", "document"], name="clsresult_one_per_document")
        ]
        indexes = [
            models.Index(fields=["job", "outcome"], name="clsresult_job_outcome"),
            models.Index(fields=["job", "label"], name="clsresult_job_label"),
            models.Index(fields=["batch", "outcome"], name="clsresult_batch_outcome"),
        ]

    def __str__(self) -> str:
        return f"{self.job_id}-{self.document_id}: {self.label or self.outcome}"

    @property
    def custom_id(self) -> str:
        return f"{self.job_id}-{self.document_id}"
