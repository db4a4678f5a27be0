"""Admin for the usage ledger and the door's tables (registry, prices, routes, budgets)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse

from claudeapp.models import Budget, ModelPrice, ModelRoute, ModelSpec, UsageRecord


def usage_totals(queryset: QuerySet[UsageRecord]) -> dict[str, Any]:
    """Totals of a set of ledger rows, and the share of prompt tokens read from the cache."""
    sums = queryset.aggregate(
        calls=Count("id"),
        cost_sum=Sum("cost_usd"),
        input_sum=Sum("input_tokens"),
        output_sum=Sum("output_tokens"),
        write_5m_sum=Sum("cache_write_5m_tokens"),
        write_1h_sum=Sum("cache_write_1h_tokens"),
        read_sum=Sum("cache_read_tokens"),
        calls_with_hit=Count("id", filter=Q(cache_read_tokens__gt=0)),
        unpriced=Count("id", filter=Q(cost_usd__isnull=True) & ~Q(input_tokens=0)),
    )
    totals: dict[str, Any] = {
        "calls": sums["calls"],
        "cost": sums["cost_sum"] or Decimal(0),
        "input_tokens": sums["input_sum"] or 0,
        "output_tokens": sums["output_sum"] or 0,
        "cache_write_5m_tokens": sums["write_5m_sum"] or 0,
        "cache_write_1h_tokens": sums["write_1h_sum"] or 0,
        "cache_read_tokens": sums["read_sum"] or 0,
        "calls_with_hit": sums["calls_with_hit"],
        "unpriced": sums["unpriced"],
    }
    prompt = (
        totals["input_tokens"]
        + totals["cache_write_5m_tokens"]
        + totals["cache_write_1h_tokens"]
        + totals["cache_read_tokens"]
    )
    totals["prompt_tokens"] = prompt
    totals["cost"] = Decimal(totals["cost"]).quantize(Decimal("0.000001"))
    share = totals["cache_read_tokens"] / prompt if prompt else 0
    totals["cache_hit_share"] = f"{share:.1%}"
    return totals


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    date_hierarchy = "created_at"
    list_display = [
        "created_at",
        "user",
        "feature",
        "model_id",
        "outcome",
        "attempts",
        "input_tokens",
        "cache_read_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "estimated",
    ]
    list_filter = [
        ("user", admin.RelatedOnlyFieldListFilter),
        "feature",
        "model_id",
        "outcome",
        "kind",
        "created_at",
        "estimated",
    ]
    search_fields = ["request_id", "message_id", "batch_id", "custom_id", "subject_id"]
    list_select_related = ["user"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            context["usage_totals"] = usage_totals(context["cl"].queryset)
        return response


@admin.register(ModelSpec)
class ModelSpecAdmin(admin.ModelAdmin):
    list_display = [
        "model_id",
        "line",
        "lifecycle",
        "legacy",
        "context_window",
        "max_output_tokens",
        "structured_outputs",
        "forced_tool_choice",
        "effort",
        "sampling_api_version",
        "min_cacheable_tokens",
        "successor",
        "synced_at",
    ]
    list_filter = ["lifecycle", "line", "legacy"]
    search_fields = ["model_id", "display_name"]
    actions = ["sync_from_api"]

    @admin.action(description="Refresh every model from GET /v1/models")
    def sync_from_api(self, request: HttpRequest, queryset: QuerySet[ModelSpec]) -> None:
        from claudeapp.claude.sync import sync_models

        report = sync_models()
        self.message_user(request, report.summary(), messages.INFO)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = [
        "model_id",
        "effective_from",
        "input_per_mtok",
        "output_per_mtok",
        "cache_write_5m_per_mtok",
        "cache_write_1h_per_mtok",
        "cache_read_per_mtok",
        "batch_multiplier",
        "long_prompt_threshold",
    ]
    list_filter = ["model_id"]
    date_hierarchy = "effective_from"


@admin.register(ModelRoute)
class ModelRouteAdmin(admin.ModelAdmin):
    list_display = ["feature", "model_id", "premium_model_id", "fallback_model_id"]


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "scope",
        "user",
        "feature",
        "period",
        "limit_usd",
        "enabled",
        "spent",
    ]
    list_filter = ["scope", "period", "enabled"]
    raw_id_fields = ["user"]

    @admin.display(description="spent this period (USD)")
    def spent(self, obj: Budget) -> str:
        from claudeapp.claude.limits import Limits
        from claudeapp.redis import get_redis

        if obj.scope == Budget.Scope.USER and obj.user_id is None:
            return "per user"
        try:
            amount = Limits().spent(
                get_redis(),
                scope=obj.scope,
                period=obj.period,
                user_id=obj.user_id,
                feature=obj.feature,
            )
        except Exception:
            return "?"
        return f"{amount:.4f}"
