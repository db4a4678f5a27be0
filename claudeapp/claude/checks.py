"""Startup check: no API key and no base URL is a clear error before the first call.

Three places, same words:
- a Django system check: an Error with DEBUG off (production: `check --deploy`, `migrate`,
  `runserver` stop on it), a Warning with DEBUG on, like SECRET_KEY, so a developer running
  `makemigrations` without an emulator is not blocked;
- an ERROR log line at every process start (`ClaudeappConfig.ready()`: web, worker, beat), so
  an ASGI server or a worker that runs no checks still says it in its first lines;
- the door factory raises `ClaudeNotConfigured` if a call is attempted anyway.
"""

from __future__ import annotations

import logging

from django.core.checks import CheckMessage, Error, Warning, register

log = logging.getLogger("claudeapp.claude")


def credentials_problem() -> str | None:
    from django.conf import settings

    if not settings.ANTHROPIC_API_KEY and not settings.ANTHROPIC_BASE_URL:
        return (
            "Claude is not configured: set ANTHROPIC_API_KEY (the real API) or ANTHROPIC_BASE_URL "
            "(an emulator such as `python -m emulator`; `make run` starts one when no key is set)."
        )
    return None


@register()
def check_claude_configured(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    from django.conf import settings

    problem = credentials_problem()
    if problem is None:
        return []
    if settings.DEBUG:
        return [Warning(problem, id="claudeapp.W001")]
    return [Error(problem, id="claudeapp.E001")]


def log_startup_problem() -> None:
    problem = credentials_problem()
    if problem:
        log.error(problem, extra={"event": "claude.not_configured"})
