"""Retry policy per feature: how many attempts, how long to wait, how long one attempt may take.

`settings.CLAUDE_RETRY` holds the defaults, `settings.CLAUDE_FEATURES[feature]` overrides them.
A wait the API asks for (`retry-after-ms`, `retry-after`) is honoured exactly; longer than the
feature's `max_wait` and the call gives up at once (the error carries the wait, so the user is
told when to come back). Otherwise exponential backoff with jitter, like the SDK's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.conf import settings

from claudeapp.claude.errors import AttemptFailure

__all__ = ["RetryPolicy", "policy_for"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_wait: float = 60.0
    timeout: float = 120.0
    connect_timeout: float = 5.0

    def delay(self, failure: AttemptFailure, attempt: int) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up now."""
        if not failure.retryable or attempt >= self.max_attempts:
            return None
        if failure.retry_after is not None and failure.retry_after > 0:
            return failure.retry_after if failure.retry_after <= self.max_wait else None
        backoff = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return backoff * (1 - 0.25 * random.random())


_FIELDS = set(RetryPolicy.__dataclass_fields__)


def policy_for(feature: str) -> RetryPolicy:
    merged = {**settings.CLAUDE_RETRY, **settings.CLAUDE_FEATURES.get(feature, {})}
    return RetryPolicy(**{k: v for k, v in merged.items() if k in _FIELDS})
