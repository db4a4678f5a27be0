"""JSON log lines with request ids, and a filter that keeps secrets out of every line."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import re

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()) | {
    "message",
    "asctime",
    "request_id",
}

# Anthropic keys, bearer tokens and authorization headers, wherever they appear in a message.
_SECRET_PATTERNS = [
    re.compile(r"sk-ant-[A-Za-z0-9_\-]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(bearer\s+)?[^\s'\",}]+"),
    re.compile(r"(?i)(x-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
]
# Fields that may hold document text or prompts: never logged, whatever a caller passes.
_DROPPED_FIELDS = {"document_text", "prompt", "messages", "system", "content", "api_key"}


def _redact(text: str) -> str:
    for value in _known_secrets():
        text = text.replace(value, "[redacted]")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


_SECRET_ENV_NAMES = ("ANTHROPIC_API_KEY", "SECRET_KEY", "METRICS_TOKEN")
_secrets_cache: tuple[tuple[str, ...], list[str]] = ((), [])


def _known_secrets() -> list[str]:
    """The secret values in the environment, re-read only when the environment changes them."""
    global _secrets_cache
    current = tuple(os.environ.get(name, "") for name in _SECRET_ENV_NAMES)
    if current != _secrets_cache[0]:
        _secrets_cache = (current, [value for value in current if len(value) >= 8])
    return _secrets_cache[1]


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return True


class RedactingFilter(logging.Filter):
    """Rewrites the record so no key, Authorization header or document text survives."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = _redact(message)
        record.args = None
        for key in list(record.__dict__):
            if key in _STANDARD_ATTRS:
                continue
            if key in _DROPPED_FIELDS:
                record.__dict__[key] = "[redacted]"
            elif isinstance(record.__dict__[key], str):
                record.__dict__[key] = _redact(record.__dict__[key])
        if record.exc_info and not record.exc_text:
            record.exc_text = _redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = _redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            payload[key] = (
                value if isinstance(value, int | float | bool | type(None)) else str(value)
            )
        if record.exc_info:
            payload["exc"] = record.exc_text or _redact(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)
