"""The usage ledger and the configuration the door reads: model registry, prices, routes, budgets.

The door (`claudeapp.claude`) caches these tables in each process and refreshes them every
`CLAUDE_CONFIG_CACHE_SECONDS` (and at once in the process that saves a change), so no call pays a
query for them.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

MONEY = {"max_digits": 24, "decimal_places": 12}  # cost in USD; section J wants >= 10 places
RATE = {"max_digits": 14, "decimal_places": 6}  # USD per million tokens


class ModelSpec(models.Model):
    """What a model accepts (reference section K); seeded, editable, refreshed by sync_models."""

    class Lifecycle(models.TextChoices):
        ACTIVE = "active"
        DEPRECATED = "deprecated"
        RETIRED = "retired"

    model_id = models.CharField(max_length=100, unique=True)
    display_name = models.CharField(max_length=100, blank=True)
    line = models.CharField(max_length=20, blank=True, help_text="haiku, sonnet, opus, fable...")
    aliases = models.JSONField(default=list, blank=True, help_text="Dated ids that mean this one.")
    context_window = models.PositiveIntegerField()
    max_output_tokens = models.PositiveIntegerField()
    thinking_modes = models.JSONField(
        default=list,
        blank=True,
        help_text='thinking.type values accepted: "adaptive", "enabled", "disabled", '
        '"between_tools". Without "disabled" thinking is always on.',
    )
    forced_tool_choice = models.BooleanField(
        default=True, help_text='tool_choice "any"/"tool" accepted.'
    )
    prefill = models.BooleanField(default=False, help_text="A trailing assistant turn accepted.")
    structured_outputs = models.BooleanField(
        default=True, help_text="Native output_config.format (json_schema)."
    )
    effort = models.BooleanField(default=True, help_text="output_config.effort accepted.")
    sampling_api_version = models.CharField(
        max_length=20,
        blank=True,
        help_text="API version under which temperature/top_p/top_k are accepted "
        '("2023-06-01"), blank when never.',
    )
    min_cacheable_tokens = models.PositiveIntegerField(default=1024)
    lifecycle = models.CharField(max_length=12, choices=Lifecycle.choices, default=Lifecycle.ACTIVE)
    legacy = models.BooleanField(default=False)
    deprecated_at = models.DateTimeField(null=True, blank=True)
    retires_at = models.DateTimeField(null=True, blank=True)
    successor = models.CharField(
        max_length=100, blank=True, help_text="Sent instead of this model once it is retired."
    )
    synced_at = models.DateTimeField(null=True, blank=True, help_text="Last sync_models refresh.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id"]
        verbose_name = "model spec"

    def __str__(self) -> str:
        return self.model_id

    @property
    def thinking_always_on(self) -> bool:
        return bool(self.thinking_modes) and "disabled" not in self.thinking_modes

    @property
    def accepts_sampling(self) -> bool:
        return bool(self.sampling_api_version)


class ModelPrice(models.Model):
    """USD per million tokens from `effective_from` until the next row for the same model."""

    model_id = models.CharField(max_length=100, db_index=True)
    effective_from = models.DateTimeField()
    input_per_mtok = models.DecimalField(**RATE)
    output_per_mtok = models.DecimalField(**RATE)
    cache_write_5m_per_mtok = models.DecimalField(**RATE)
    cache_write_1h_per_mtok = models.DecimalField(**RATE)
    cache_read_per_mtok = models.DecimalField(**RATE)
    batch_multiplier = models.DecimalField(
        max_digits=6, decimal_places=4, default=Decimal("0.5"), help_text="Applied to every part."
    )
    long_prompt_threshold = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Over this many prompt tokens (input + cache writes + reads) the whole request "
        "is billed at the long-prompt rates.",
    )
    long_input_per_mtok = models.DecimalField(**RATE, null=True, blank=True)
    long_output_per_mtok = models.DecimalField(**RATE, null=True, blank=True)
    long_cache_write_5m_per_mtok = models.DecimalField(**RATE, null=True, blank=True)
    long_cache_write_1h_per_mtok = models.DecimalField(**RATE, null=True, blank=True)
    long_cache_read_per_mtok = models.DecimalField(**RATE, null=True, blank=True)
    source = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["model_id", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_id", "effective_from"], name="modelprice_unique_model_from"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_id} from {self.effective_from:%Y-%m-%d}"

    def clean(self) -> None:
        long_rates = [
            self.long_input_per_mtok,
            self.long_output_per_mtok,
            self.long_cache_write_5m_per_mtok,
            self.long_cache_write_1h_per_mtok,
            self.long_cache_read_per_mtok,
        ]
        if self.long_prompt_threshold and any(r is None for r in long_rates):
            raise ValidationError("A long-prompt threshold needs all five long-prompt rates.")


class ModelRoute(models.Model):
    """Which model a feature uses; rows here override `CLAUDE_ROUTES` from settings."""

    feature = models.CharField(max_length=64, unique=True)
    model_id = models.CharField(
        max_length=100, help_text='A model id, or "cheapest" for the cheapest active model.'
    )
    premium_model_id = models.CharField(
        max_length=100, blank=True, help_text="Used when a caller asks for the best model."
    )
    fallback_model_id = models.CharField(
        max_length=100, blank=True, help_text="Used while the main model's breaker is open."
    )

    class Meta:
        ordering = ["feature"]

    def __str__(self) -> str:
        return f"{self.feature} -> {self.model_id}"


class Budget(models.Model):
    """A USD ceiling per day or month, checked before every call against Redis counters."""

    class Scope(models.TextChoices):
        USER = "user", "per user"
        FEATURE = "feature", "per feature"
        GLOBAL = "global", "whole site"

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    scope = models.CharField(max_length=10, choices=Scope.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="Scope user: empty means every user without a row of their own.",
    )
    feature = models.CharField(max_length=64, blank=True)
    period = models.CharField(max_length=5, choices=Period.choices)
    limit_usd = models.DecimalField(max_digits=14, decimal_places=4)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["scope", "feature", "period"]

    def __str__(self) -> str:
        who = {
            self.Scope.USER: f"user {self.user or 'default'}",
            self.Scope.FEATURE: f"feature {self.feature}",
            self.Scope.GLOBAL: "site",
        }[self.Scope(self.scope)]
        return f"{who}: ${self.limit_usd}/{self.period}"

    def clean(self) -> None:
        if self.scope == self.Scope.FEATURE and not self.feature:
            raise ValidationError("A feature budget names its feature.")
        if self.scope != self.Scope.USER and self.user_id:
            raise ValidationError("Only a user budget names a user.")


class UsageRecord(models.Model):
    """One row per call through the door: what it cost, from the usage the API returned."""

    class Kind(models.TextChoices):
        MESSAGE = "message"
        STREAM = "stream"
        COUNT_TOKENS = "count_tokens"
        BATCH_CREATE = "batch_create"
        BATCH_RESULT = "batch_result"

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="claude_usage",
    )
    feature = models.CharField(max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.MESSAGE)
    model_id = models.CharField(max_length=100, help_text="The model the request was sent to.")
    requested_model_id = models.CharField(
        max_length=100, blank=True, help_text="Set when routing, retirement or fallback changed it."
    )
    request_id = models.CharField(max_length=128, blank=True)
    message_id = models.CharField(max_length=128, blank=True)
    batch_id = models.CharField(max_length=128, blank=True, db_index=True)
    custom_id = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=40, help_text='"ok", "stopped", or the error kind.')
    stop_reason = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, verbose_name="TTFT ms")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0, help_text="Includes thinking tokens.")
    cache_write_5m_tokens = models.PositiveIntegerField(default=0)
    cache_write_1h_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    thinking_tokens = models.PositiveIntegerField(default=0)
    service_tier = models.CharField(max_length=16, blank=True)
    cost_usd = models.DecimalField(**MONEY, null=True, blank=True, help_text="Empty: no price.")
    price = models.ForeignKey(ModelPrice, null=True, blank=True, on_delete=models.SET_NULL)
    estimated = models.BooleanField(
        default=False, help_text="Usage estimated locally (the stream ended before its usage)."
    )
    subject_type = models.CharField(max_length=100, blank=True, help_text='"app_label.model"')
    subject_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="usage_user_time"),
            models.Index(fields=["feature", "created_at"], name="usage_feature_time"),
            models.Index(fields=["model_id", "created_at"], name="usage_model_time"),
            models.Index(fields=["subject_type", "subject_id"], name="usage_subject"),
        ]
        constraints = [
            # Batch results are booked once per line, however often they are read.
            models.UniqueConstraint(
                fields=["batch_id", "custom_id"],
                condition=~Q(custom_id=""),
                name="usage_unique_batch_line",
            )
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.feature} {self.model_id} {self.outcome}"

    @property
    def prompt_tokens(self) -> int:
        """Every input token: uncached + cache writes + cache reads."""
        return (
            self.input_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
            + self.cache_read_tokens
        )
