from __future__ import annotations

from django.apps import AppConfig


class RagConfig(AppConfig):
    name = "documents.rag"
    label = "rag"
    verbose_name = "RAG"
    default_auto_field = "django.db.models.BigAutoField"
