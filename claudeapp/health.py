"""Checks behind GET /healthz: each returns "ok" or a short error string."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.db import connection

from claudeapp.redis import get_redis

_CLAUDE_CACHE: dict[str, tuple[float, str]] = {}
_CLAUDE_TTL = 30.0
DEFAULT_BASE_URL = "https://api.anthropic.com"


def check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:200]
    return "ok"


def check_redis() -> str:
    try:
        get_redis().ping()
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:200]
    return "ok"


def check_worker() -> str:
    from claudeapp.celery import app

    try:
        replies = app.control.ping(timeout=settings.HEALTHZ_WORKER_TIMEOUT)
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:200]
    if not replies:
        return "error: no worker answered"
    return "ok"


def claude_backend() -> str:
    if settings.CLAUDE_EMULATOR:
        return "emulator"
    base = (settings.ANTHROPIC_BASE_URL or DEFAULT_BASE_URL).rstrip("/")
    return "anthropic" if base == DEFAULT_BASE_URL else "custom"


def check_claude() -> str:
    """Lists models (free, no tokens) at most every 30 s; the last answer is reused between."""
    base = (settings.ANTHROPIC_BASE_URL or DEFAULT_BASE_URL).rstrip("/")
    cached = _CLAUDE_CACHE.get(base)
    now = time.monotonic()
    if cached and now - cached[0] < _CLAUDE_TTL:
        return cached[1]
    key = settings.ANTHROPIC_API_KEY or ("emulator-key" if settings.CLAUDE_EMULATOR else "")
    if not key:
        result = "error: no ANTHROPIC_API_KEY and no emulator"
    else:
        request = urllib.request.Request(  # noqa: S310 - base URL comes from settings
            f"{base}/v1/models?limit=1",
            headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
                json.load(response)
            result = "ok"
        except urllib.error.HTTPError as exc:
            result = f"error: HTTP {exc.code}"
        except Exception as exc:
            result = f"error: {type(exc).__name__}"
    _CLAUDE_CACHE[base] = (now, result)
    return result
