"""Chat: personas (system prompt presets), conversations and their messages.

A message keeps the content blocks the API returned, verbatim (thinking signatures, tool blocks,
citations); requests replay them and pages render from them. An assistant message is a
:class:`claudeapp.replies.Reply`: it streams, then ends in one of the reply statuses.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from claudeapp.replies import Reply, ReplyStatus, Snapshot


class Persona(models.Model):
    """A system prompt preset that users pick for a conversation (managed in admin)."""

    name = models.CharField(max_length=80, unique=True)
    description = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField()
    is_active = models.BooleanField(default=True)
    is_default = models.BooleanField(
        default=False, help_text="Used for new conversations (one persona at most)."
    )
    sort_order = models.PositiveSmallIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sort_order", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="persona_one_default",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    class Thinking(models.TextChoices):
        OFF = "off", "Off"
        ON = "on", "On"

    class Effort(models.TextChoices):
        DEFAULT = "", "Model default"
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"
        XHIGH = "xhigh", "Extra high"
        MAX = "max", "Max"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=120, blank=True)
    persona = models.ForeignKey(Persona, null=True, blank=True, on_delete=models.SET_NULL)
    system_prompt = models.TextField(
        blank=True, help_text="A custom system prompt; used instead of the persona's."
    )
    model_id = models.CharField(max_length=100)
    max_tokens = models.PositiveIntegerField(default=4096, help_text="Longest reply, in tokens.")
    thinking = models.CharField(max_length=3, choices=Thinking.choices, default=Thinking.OFF)
    thinking_budget = models.PositiveIntegerField(
        default=4096, help_text="Thinking tokens for models with a thinking budget."
    )
    effort = models.CharField(max_length=6, choices=Effort.choices, blank=True)
    temperature = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True)
    # Bound to a set: replies read its documents (whole set, or the passages retrieved for the
    # latest message) through RAG's prompts and cite them.
    document_set = models.ForeignKey(
        "documents.DocumentSet",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="conversations",
    )
    # The oldest message still sent to Claude; earlier ones are kept but left out (context).
    history_start = models.DateTimeField(null=True, blank=True)
    total_cost_usd = models.DecimalField(max_digits=20, decimal_places=12, default=Decimal(0))
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent")]

    def __str__(self) -> str:
        return self.display_title

    @property
    def display_title(self) -> str:
        return self.title or "New chat"

    @property
    def group(self) -> str:
        """The channel-layer group every open tab of this conversation listens to."""
        return f"conversation-{self.pk}"

    def effective_system_prompt(self) -> str:
        if self.system_prompt.strip():
            return self.system_prompt
        return self.persona.system_prompt if self.persona else ""


def conversation_group(conversation_id: object) -> str:
    return f"conversation-{conversation_id}"


class Message(Reply):
    """One turn: the user's text, or Claude's reply (a Reply: streamed, then stored once)."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    # Verbatim content blocks: the user's, or what the API returned for this reply.
    content = models.JSONField(default=list, blank=True)
    # Continue on a truncated reply: one entry per extra call, {"mode": "prefill"|"turn",
    # "prompt": str, "content": [blocks], "model_id": str}; its output reads as the same reply.
    continuations = models.JSONField(default=list, blank=True)
    # A reply in a conversation bound to a set: what its prompt held, in request order
    # (RagQuery.sources' shape), and the passages it cites, numbered as the reply shows them
    # (RagQuery.citations' shape).
    sources = models.JSONField(default=list, blank=True)
    citations = models.JSONField(default=list, blank=True)
    model_id = models.CharField(max_length=100, blank=True)
    stop_reason = models.CharField(max_length=40, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    # Tokens this turn takes in a request (usage when known, a local estimate otherwise).
    tokens = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=12, null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # The sanitized render of `content`, kept so long pages are not re-rendered each visit.
    html = models.TextField(blank=True)
    html_version = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta(Reply.Meta):
        ordering = ["created_at", "id"]
        indexes = [
            *Reply.Meta.indexes,
            models.Index(fields=["conversation", "created_at"], name="message_conversation_time"),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.pk}"

    def save(self, *args, **kwargs) -> None:
        if self.role == self.Role.USER and self.status == ReplyStatus.STREAMING:
            self.status = ReplyStatus.COMPLETE  # only replies stream
        super().save(*args, **kwargs)

    # --- Reply protocol -------------------------------------------------------------------------

    @property
    def reply_group(self) -> str:
        return conversation_group(self.conversation_id)

    @property
    def reply_dom_id(self) -> str:
        return f"m-{self.pk}"

    def reply_partial_fields(self, snapshot: Snapshot | None) -> dict:
        if snapshot is None or not (snapshot.text or snapshot.thinking):
            return {}
        if self.continuations or (self.content and not snapshot.text.startswith(self.text)):
            return {}  # a continuation's earlier parts are already stored
        return {"content": partial_blocks(snapshot.text, snapshot.thinking), "html": ""}

    def reply_done_html(self) -> str:
        from conversations.rendering import render_reply_done

        return render_reply_done(self)

    def reply_after_sweep(self) -> None:
        from conversations.services import conversation_lock_release_sync

        conversation_lock_release_sync(self.conversation_id, self.reply_key)

    # --- reading --------------------------------------------------------------------------------

    @property
    def is_user(self) -> bool:
        return self.role == self.Role.USER

    @property
    def all_blocks(self) -> list[dict]:
        blocks = list(self.content or [])
        for part in self.continuations or []:
            blocks.extend(part.get("content") or [])
        return blocks

    @property
    def text(self) -> str:
        """Everything the message says, as text (continuations read as one reply)."""
        if self.is_user:
            return "\n\n".join(
                b.get("text", "") for b in self.content or [] if b.get("type") == "text"
            )
        return "".join(b.get("text", "") for b in self.all_blocks if b.get("type") == "text")

    @property
    def thinking_text(self) -> str:
        return "\n\n".join(
            b.get("thinking", "") for b in self.all_blocks if b.get("type") == "thinking"
        ).strip()

    @property
    def has_redacted_thinking(self) -> bool:
        return any(b.get("type") == "redacted_thinking" for b in self.all_blocks)

    @property
    def cached_tokens(self) -> int:
        return self.cache_read_tokens

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


def partial_blocks(text: str, thinking: str = "") -> list[dict]:
    """The content a reply that never finished leaves: its text (unsigned thinking is kept for
    the page only; requests never replay it)."""
    blocks: list[dict] = []
    if thinking:
        blocks.append({"type": "thinking", "thinking": thinking, "signature": ""})
    if text:
        blocks.append({"type": "text", "text": text})
    return blocks


__all__ = ["Conversation", "Message", "Persona", "ReplyStatus", "conversation_group"]
