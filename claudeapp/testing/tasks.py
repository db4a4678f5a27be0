"""Tasks that exist only for the wiring tests (loaded by test workers with `-I`)."""

from __future__ import annotations

import time

from celery import shared_task
from django.contrib.auth import get_user_model

from claudeapp.redis import get_redis, key


@shared_task(name="claudeapp.testing.tasks.round_trip")
def round_trip(token: str, username: str) -> None:
    """Proves broker -> worker -> database -> Redis: reads a committed row, writes a reply."""
    user = get_user_model().objects.get(username=username)
    get_redis().set(key("test-round-trip", token), f"{user.pk}:{user.email}", ex=300)


@shared_task(name="claudeapp.testing.tasks.slow_mark", acks_late=True)
def slow_mark(token: str, seconds: float) -> None:
    """Marks started, works for `seconds`, then counts a completion (idempotent by token)."""
    redis = get_redis()
    redis.incr(key("test-slow", token, "started"))
    time.sleep(seconds)
    redis.sadd(key("test-slow", token, "done"), "1")
    redis.incr(key("test-slow", token, "completions"))
