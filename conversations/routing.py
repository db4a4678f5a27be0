"""Websocket routes of the chat (collected in claudeapp.routing)."""

from __future__ import annotations

from django.urls import path

from conversations.consumers import ConversationConsumer

websocket_urlpatterns = [
    path("ws/chat/<uuid:conversation_id>/", ConversationConsumer.as_asgi()),
]
