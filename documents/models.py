from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import F, Q
from django.urls import reverse


class DocumentSet(models.Model):
    """A named collection of documents; members may read it, staff manage it."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_document_sets"
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="document_sets"
    )
    member_groups = models.ManyToManyField(Group, blank=True, related_name="document_sets")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("documents:set-detail", args=[self.pk])


_TYPE_LABELS = {
    "application/pdf": "PDF",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "DOCX",
    "text/html": "HTML",
    "text/csv": "CSV",
    "text/markdown": "Markdown",
    "text/plain": "Text",
    "application/zip": "ZIP",
}


class Document(models.Model):
    """One file of a set: the original, what was detected and extracted from it, and its state."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    document_set = models.ForeignKey(
        DocumentSet, on_delete=models.CASCADE, related_name="documents"
    )
    # Empty only for documents whose original could not be kept.
    file = models.FileField(max_length=300, blank=True)
    # Where it came from, relative: `report.pdf`, `folder/a.txt`, `archive.zip/inner/b.md`,
    # `people.csv/row-12.csv` for one row of a CSV imported row by row.
    filename = models.CharField(max_length=500)
    media_type = models.CharField(max_length=120, blank=True)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    text = models.TextField(blank=True)
    token_estimate = models.PositiveIntegerField(default=0)
    chunk_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.TextField(blank=True)
    # Extraction facts: encoding, page offsets (`pages`: [[start, end], ...]), csv rows ...
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    extracted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["document_set", "sha256"], name="document_unique_content_per_set"
            ),
        ]
        indexes = [models.Index(fields=["document_set", "status"], name="document_set_status")]

    def __str__(self) -> str:
        return self.filename

    def get_absolute_url(self) -> str:
        return reverse("documents:document-detail", args=[self.document_set_id, self.pk])

    @property
    def type_label(self) -> str:
        """A short name for the detected type, for lists."""
        return _TYPE_LABELS.get(self.media_type, self.media_type.rsplit("/", 1)[-1] or "—")

    @property
    def page_count(self) -> int | None:
        pages = self.metadata.get("pages")
        return len(pages) if pages else None


class Chunk(models.Model):
    """A token-bounded slice of a document's text: `document.text[start:end] == text`."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    order = models.PositiveIntegerField()
    start = models.PositiveIntegerField()
    end = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    # 1-based, for PDFs; a chunk may straddle a page break.
    page_start = models.PositiveIntegerField(null=True, blank=True)
    page_end = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["document", "order"]
        constraints = [
            models.UniqueConstraint(fields=["document", "order"], name="chunk_unique_order"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="chunk_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.order}"


from documents.classification.models import *  # noqa: E402, F403 (classification, issue 8)
