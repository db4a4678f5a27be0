"""Typed errors the door raises (or puts in `Failed`), each with a message a user can read.

`classify()` turns whatever one attempt raised (an SDK error, a transport error, a stream cut
short) into an `AttemptFailure`: the typed error, whether another attempt may help, whether it
counts against the model's circuit breaker, and how long the API asked us to wait.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "AttemptFailure",
    "AuthenticationFailed",
    "BreakerOpen",
    "BudgetExceeded",
    "ClaudeError",
    "ClaudeNotConfigured",
    "ClaudeUnavailable",
    "ConcurrencyLimited",
    "InvalidRequest",
    "InvalidResponse",
    "RateLimited",
    "SpendLimitReached",
    "StreamInterrupted",
    "UnsupportedParameter",
    "classify",
]

# 429s that no amount of waiting fixes: an admin must raise a limit.
SPEND_LIMIT_CODES = frozenset(
    {"enforced_spend_limit_reached", "contract_spend_limit_reached", "ramp_limit_exceeded"}
)


def _seconds(value: float | None) -> str:
    return f"{max(1, math.ceil(value or 0))} s"


class ClaudeError(Exception):
    """Base of every error the door raises; `kind` is the ledger's outcome."""

    kind = "error"
    default_user_message = "Something went wrong while talking to Claude. Please try again."

    def __init__(
        self,
        message: str = "",
        *,
        user_message: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
        request_id: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message or self.default_user_message)
        self.retry_after = retry_after
        self.status = status
        self.request_id = request_id
        self.attempts = 0
        if kind:
            self.kind = kind
        self.user_message = user_message or self._user_message()

    def _user_message(self) -> str:
        return self.default_user_message


class ClaudeNotConfigured(ClaudeError, ImproperlyConfigured):
    kind = "not_configured"
    default_user_message = "Claude is not configured on this server. Please tell an administrator."


class RateLimited(ClaudeError):
    kind = "rate_limited"

    def _user_message(self) -> str:
        return f"Too many requests right now; try again in {_seconds(self.retry_after)}."


class ConcurrencyLimited(RateLimited):
    kind = "concurrency_limited"

    def _user_message(self) -> str:
        return "Claude is busy with other requests; try again in a few seconds."


class BudgetExceeded(ClaudeError):
    kind = "budget_exceeded"

    def __init__(self, message: str = "", *, user_message: str, **kw: Any) -> None:
        super().__init__(message or user_message, user_message=user_message, **kw)


class BreakerOpen(ClaudeError):
    kind = "breaker_open"

    def _user_message(self) -> str:
        return f"Claude is overloaded; try again in {_seconds(self.retry_after)}."


class ClaudeUnavailable(ClaudeError):
    """Overloaded, server errors, timeouts, dropped connections: after the retries ran out."""

    kind = "unavailable"
    default_user_message = "Claude is unavailable right now; please try again in a minute."


class StreamInterrupted(ClaudeUnavailable):
    kind = "interrupted"
    default_user_message = "The reply was cut off before it finished. Please try again."


class SpendLimitReached(ClaudeError):
    kind = "spend_limit"
    default_user_message = (
        "The organisation's Claude spend limit has been reached; an administrator needs to "
        "raise it."
    )


class AuthenticationFailed(ClaudeError):
    kind = "auth_error"
    default_user_message = (
        "Claude rejected this server's credentials. Please tell an administrator."
    )


class InvalidRequest(ClaudeError):
    kind = "invalid_request"
    default_user_message = "Claude could not accept this request."


class UnsupportedParameter(InvalidRequest):
    kind = "unsupported_parameter"


class InvalidResponse(ClaudeError):
    kind = "invalid_response"
    default_user_message = "Claude's reply could not be read. Please try again."


@dataclass(slots=True)
class AttemptFailure:
    error: ClaudeError
    retryable: bool
    server_fault: bool  # counts against the model's circuit breaker
    retry_after: float | None = None
    status: int | None = None


def parse_retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms` first, then `retry-after`."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def _status_failure(exc: Any) -> AttemptFailure:
    status = exc.status_code
    err_type = getattr(exc, "type", None) or ""
    error_code = getattr(exc, "error_code", None) or ""
    request_id = getattr(exc, "request_id", None)
    api_message = (getattr(exc, "api_message", None) or str(exc))[:300]
    headers = getattr(getattr(exc, "response", None), "headers", None)
    retry_after = parse_retry_after(headers)
    should_retry = headers.get("x-should-retry") if headers is not None else None
    kw = {"status": status, "request_id": request_id}

    if status == 200:  # an `event: error` inside a stream
        if err_type in ("overloaded_error", "api_error"):
            kind = "overloaded" if err_type == "overloaded_error" else "server_error"
            error = ClaudeUnavailable(api_message, kind=kind, **kw)
            return AttemptFailure(error, True, True, retry_after, status)
        if err_type == "rate_limit_error":
            return AttemptFailure(RateLimited(api_message, **kw), True, False, retry_after, status)
        return AttemptFailure(InvalidRequest(api_message, **kw), False, False, None, status)

    if status == 429:
        if error_code in SPEND_LIMIT_CODES or "spend_limit" in error_code:
            error = SpendLimitReached(api_message, kind="spend_limit", **kw)
            return AttemptFailure(error, False, False, None, status)
        error = RateLimited(api_message, retry_after=retry_after, **kw)
        return AttemptFailure(error, should_retry != "false", False, retry_after, status)
    if status in (408, 409):
        kind = "timeout" if status == 408 else "conflict"
        error = ClaudeUnavailable(api_message, kind=kind, **kw)
        return AttemptFailure(error, should_retry != "false", False, retry_after, status)
    if status >= 500:
        kind = "overloaded" if status == 529 or err_type == "overloaded_error" else "server_error"
        error = ClaudeUnavailable(api_message, kind=kind, **kw)
        return AttemptFailure(error, should_retry != "false", True, retry_after, status)
    if status in (401, 403):
        return AttemptFailure(AuthenticationFailed(api_message, **kw), False, False, None, status)
    if status == 402:
        error = SpendLimitReached(api_message, kind="billing_error", **kw)
        return AttemptFailure(error, False, False, None, status)
    return AttemptFailure(InvalidRequest(api_message, **kw), False, False, None, status)


def classify(exc: BaseException) -> AttemptFailure:
    """What one failed attempt means for the next one."""
    import anthropic
    import httpx2

    if isinstance(exc, ClaudeError):
        retryable = isinstance(exc, StreamInterrupted | ClaudeUnavailable)
        return AttemptFailure(exc, retryable, retryable, exc.retry_after, exc.status)
    if isinstance(exc, anthropic.APIStatusError):
        return _status_failure(exc)
    if isinstance(exc, anthropic.APITimeoutError):
        return AttemptFailure(ClaudeUnavailable(str(exc), kind="timeout"), True, True)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        # A broken chunked body mid-stream surfaces as a raw httpx2 error (reference 0 #10).
        error = ClaudeUnavailable(f"{type(exc).__name__}: {exc}"[:300], kind="connection_error")
        return AttemptFailure(error, True, True)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return AttemptFailure(InvalidResponse(str(exc)[:300]), False, False)
    if isinstance(exc, anthropic.AnthropicError):  # e.g. "no results_url" for a batch
        return AttemptFailure(InvalidRequest(str(exc)[:300]), False, False)
    if isinstance(exc, AssertionError):  # the SDK's stream accumulator: no message_start
        return AttemptFailure(InvalidResponse(f"stream without message_start: {exc}"), True, True)
    if isinstance(exc, ValueError):
        # The SDK refusing arguments before sending, or unparseable tool JSON in a stream:
        # neither is the service's fault, and sending it again would not help.
        return AttemptFailure(InvalidResponse(f"{type(exc).__name__}: {exc}"[:300]), False, False)
    raise exc
