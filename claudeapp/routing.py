"""Websocket routes of every app, collected in one place for the ASGI router."""

from __future__ import annotations

from django.urls import path

from claudeapp import consumers
from conversations.routing import websocket_urlpatterns as chat_websocket_urlpatterns
from documents.rag.routing import websocket_urlpatterns as rag_websocket_urlpatterns

websocket_urlpatterns = [
    path("ws/events/", consumers.UserEventsConsumer.as_asgi()),
    *chat_websocket_urlpatterns,
    *rag_websocket_urlpatterns,
]
