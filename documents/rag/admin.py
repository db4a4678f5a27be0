from __future__ import annotations

from django.contrib import admin

from documents.rag.models import RagQuery, RagSetCache


@admin.register(RagQuery)
class RagQueryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "document_set", "user", "strategy", "status",
                    "cache_read_tokens", "input_tokens", "output_tokens", "cost_usd"]  # fmt: skip
    list_filter = ["status", "strategy"]
    search_fields = ["question"]
    list_select_related = ["document_set", "user"]
    raw_id_fields = ["document_set", "user"]
    readonly_fields = [f.name for f in RagQuery._meta.fields]
    date_hierarchy = "created_at"


@admin.register(RagSetCache)
class RagSetCacheAdmin(admin.ModelAdmin):
    list_display = ["document_set", "model_id", "prefix_tokens", "touched_at",
                    "last_question_at", "warm_count", "warm_cost_usd"]  # fmt: skip
    readonly_fields = [f.name for f in RagSetCache._meta.fields]
