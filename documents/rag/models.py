"""RAG: questions on a document set and their answers (a streamed Reply), the lexical index over
chunks, and each set's document-prompt cache state."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from claudeapp.replies import Reply, ReplyStatus, Snapshot
from documents.models import Chunk, DocumentSet

MONEY = {"max_digits": 24, "decimal_places": 12}


def rag_query_group(query_id: object) -> str:
    """The channel-layer group a set page listens to for one answer."""
    return f"rag-query-{query_id}"


class RagQuery(Reply):
    """A question on a set and Claude's answer: streamed, then stored verbatim with the passages
    it cites, its tokens, cost and cache reads."""

    class Strategy(models.TextChoices):
        WHOLE_SET = "whole_set", "Whole set in context"
        RETRIEVED = "retrieved", "Retrieved passages"

    document_set = models.ForeignKey(
        DocumentSet, on_delete=models.CASCADE, related_name="rag_queries"
    )
    # Empty for `manage.py ask` without --user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="rag_queries",
    )
    question = models.TextField()
    strategy = models.CharField(max_length=10, choices=Strategy.choices)
    set_tokens = models.PositiveIntegerField(
        default=0, help_text="Estimated tokens of the set's ready documents when asked."
    )
    # What the prompt held, in request order (document_index / search_result_index):
    # [{"document": id, "title": str, "start": int, "end": int, "chunk": id | None,
    #   "pages": [[start, end], ...] | None}]
    sources = models.JSONField(default=list, blank=True)
    # The answer's content blocks exactly as the API returned them (citations included).
    content = models.JSONField(default=list, blank=True)
    # The cited passages, numbered as the answer shows them:
    # [{"n", "document", "title", "start", "end", "page_start", "page_end", "cited_text"}]
    citations = models.JSONField(default=list, blank=True)
    html = models.TextField(blank=True)
    model_id = models.CharField(max_length=100, blank=True)
    stop_reason = models.CharField(max_length=40, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(**MONEY, null=True, blank=True)
    retrieval_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta(Reply.Meta):
        ordering = ["-created_at", "-id"]
        verbose_name = "RAG question"
        indexes = [
            *Reply.Meta.indexes,
            models.Index(fields=["document_set", "user", "-created_at"], name="ragquery_set_user"),
            models.Index(fields=["document_set", "-created_at"], name="ragquery_set_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.document_set_id}: {self.question[:60]}"

    def get_absolute_url(self) -> str:
        return reverse("documents:rag-answer", args=[self.document_set_id, self.pk])

    # --- Reply protocol -------------------------------------------------------------------------

    @property
    def reply_group(self) -> str:
        return rag_query_group(self.pk)

    @property
    def reply_dom_id(self) -> str:
        return f"rag-{self.pk}"

    def reply_partial_fields(self, snapshot: Snapshot | None) -> dict:
        if snapshot is None or not snapshot.text:
            return {}
        return {"content": [{"type": "text", "text": snapshot.text}], "html": ""}

    def reply_done_html(self) -> str:
        from documents.rag.rendering import render_answer_done

        return render_answer_done(self)

    # --- reading --------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content or [] if b.get("type") == "text")

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def cache_read_share(self) -> float:
        total = self.prompt_tokens
        return self.cache_read_tokens / total if total else 0.0

    @property
    def is_finished(self) -> bool:
        return self.status != ReplyStatus.STREAMING

    @property
    def body_html(self) -> str:
        """The stored render; text left by a lost runner is rendered on the fly."""
        if self.html or not self.text:
            return self.html
        from conversations.markdown import render_markdown

        return render_markdown(self.text)

    @property
    def status_message(self) -> str:
        if self.status == ReplyStatus.STOPPED:
            return "Stopped: the answer above is incomplete."
        if self.status == ReplyStatus.TRUNCATED:
            return "The answer reached its length limit and is incomplete."
        if self.status == ReplyStatus.REFUSED:
            return "Claude declined to answer this question."
        if self.status == ReplyStatus.FAILED:
            return self.error or "The answer could not be completed."
        return ""


class TsVectorField(models.TextField):
    """PostgreSQL's `tsvector` (plain text elsewhere); written and read by raw SQL only."""

    def db_type(self, connection) -> str:  # noqa: ANN001 - Django's field API
        return "tsvector" if connection.vendor == "postgresql" else "text"


class ChunkSearch(models.Model):
    """A chunk in the lexical index. On PostgreSQL `vector` is its `tsvector` (GIN-indexed); on
    SQLite the row only marks the chunk as indexed and the text lives in the FTS5 table
    `rag_chunkfts` (rowid = chunk id).

    No foreign key constraint: the documents app deletes chunks in bulk and must not pay for
    this index. Rows of deleted chunks are never returned (searches join the live chunks) and
    are pruned when the set is next indexed; chunk ids are never reused."""

    chunk = models.OneToOneField(
        Chunk, on_delete=models.DO_NOTHING, db_constraint=False, primary_key=True, related_name="+"
    )
    document_set_id = models.BigIntegerField(db_index=True)
    vector = TsVectorField(null=True)

    class Meta:
        verbose_name = "indexed chunk"

    def __str__(self) -> str:
        return f"chunk {self.chunk_id} (set {self.document_set_id})"


class ChunkEmbedding(models.Model):
    """A chunk's embedding (the optional embedding stage): float32 bytes, L2-normalised."""

    chunk = models.OneToOneField(
        Chunk, on_delete=models.DO_NOTHING, db_constraint=False, primary_key=True, related_name="+"
    )
    document_set_id = models.BigIntegerField(db_index=True)
    model_name = models.CharField(max_length=100)
    vector = models.BinaryField()

    class Meta:
        verbose_name = "chunk embedding"

    def __str__(self) -> str:
        return f"{self.model_name} vector of chunk {self.chunk_id}"


class RagSetCache(models.Model):
    """Where a set's whole-set document prompt stands in Claude's prompt cache, as far as we
    know: the fingerprint of the prompt prefix last sent and when a call last wrote or read it.
    A 1h cache entry lives 1h after its last use."""

    document_set = models.OneToOneField(
        DocumentSet, on_delete=models.CASCADE, primary_key=True, related_name="rag_cache"
    )
    fingerprint = models.CharField(max_length=64, blank=True)
    model_id = models.CharField(max_length=100, blank=True)
    prefix_tokens = models.PositiveIntegerField(default=0)
    touched_at = models.DateTimeField(null=True, blank=True)
    last_question_at = models.DateTimeField(null=True, blank=True)
    warmed_at = models.DateTimeField(null=True, blank=True)
    warm_count = models.PositiveIntegerField(default=0)
    warm_cost_usd = models.DecimalField(**MONEY, default=Decimal(0))

    class Meta:
        verbose_name = "set prompt cache"

    def __str__(self) -> str:
        return f"cache of set {self.document_set_id}"
