from __future__ import annotations

from django.contrib import admin

from conversations.models import Conversation, Message, Persona


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "is_active", "is_default", "sort_order", "updated_at"]
    list_editable = ["is_active", "sort_order"]
    search_fields = ["name", "description", "system_prompt"]


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["created_at", "role", "status", "model_id", "output_tokens", "cost_usd", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["created_at"]


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "display_title", "owner", "model_id", "document_set", "total_cost_usd", "updated_at",
    ]  # fmt: skip
    list_filter = ["model_id", "document_set"]
    list_select_related = ["owner", "document_set"]
    search_fields = ["title", "owner__username"]
    raw_id_fields = ["owner", "document_set"]
    readonly_fields = ["total_cost_usd", "history_start", "created_at", "updated_at"]
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["created_at", "conversation", "role", "status", "model_id", "cost_usd"]
    list_filter = ["role", "status", "model_id"]
    raw_id_fields = ["conversation"]
    readonly_fields = [
        "run_id", "started_at", "heartbeat_at", "finished_at", "request_id", "stop_reason",
        "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "cost_usd",
        "ttft_ms", "duration_ms", "html_version", "sources", "citations",
    ]  # fmt: skip
    exclude = ["html"]
