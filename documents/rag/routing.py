"""Websocket routes of RAG (collected in claudeapp.routing)."""

from __future__ import annotations

from django.urls import path

from documents.rag.consumers import RagAnswerConsumer

websocket_urlpatterns = [
    path("ws/rag/<int:query_id>/", RagAnswerConsumer.as_asgi()),
]
