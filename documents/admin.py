from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from documents import services
from documents.models import Chunk, Document, DocumentSet


@admin.register(DocumentSet)
class DocumentSetAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "document_total", "created_at"]
    search_fields = ["name", "description"]
    filter_horizontal = ["members", "member_groups"]
    raw_id_fields = ["owner"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[DocumentSet]:
        return super().get_queryset(request).annotate(document_total=Count("documents"))

    @admin.display(description="documents", ordering="document_total")
    def document_total(self, obj: DocumentSet) -> int:
        return obj.document_total


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["filename", "document_set", "status", "media_type", "size", "created_at"]
    list_filter = ["status", "media_type", "document_set"]
    search_fields = ["filename", "sha256"]
    list_select_related = ["document_set"]
    readonly_fields = [
        "document_set",
        "file",
        "filename",
        "media_type",
        "size",
        "sha256",
        "token_estimate",
        "chunk_count",
        "status",
        "failure_reason",
        "metadata",
        "created_at",
        "extracted_at",
    ]
    exclude = ["text"]
    actions = ["extract_again"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        return super().get_queryset(request).defer("text")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # documents arrive through upload or import_documents

    @admin.action(description="Extract the selected documents again")
    def extract_again(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        count = services.documents_reextract(documents=queryset)
        noun = "document" if count == 1 else "documents"
        self.message_user(request, f"{count} {noun} queued for extraction.", messages.SUCCESS)


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ["document", "order", "start", "end", "token_count", "page_start"]
    search_fields = ["document__filename"]
    raw_id_fields = ["document"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Chunk | None = None) -> bool:
        return False
