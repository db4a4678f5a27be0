"""Websocket routes of every app, collected in one place for the ASGI router."""

from __future__ import annotations

from django.urls import path

from claudeapp import consumers

websocket_urlpatterns = [
    path("ws/events/", consumers.UserEventsConsumer.as_asgi()),
]
