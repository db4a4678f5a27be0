"""Retries through the emulator (real HTTP, the real SDK with its own retries off)."""

from __future__ import annotations

import time

import pytest

from claudeapp.claude import (
    CallContext,
    ClaudeUnavailable,
    InvalidRequest,
    RateLimited,
    SpendLimitReached,
)
from claudeapp.models import UsageRecord
from tests.claude.helpers import requests_made

pytestmark = pytest.mark.django_db
HI = [{"role": "user", "content": "hi"}]
CTX = CallContext("retry-test")


def test_a_429_with_retry_after_is_retried_after_the_wait_not_before(door, emu):
    emu.faults([{"kind": "status", "status": 429, "retry_after": 1}])
    started = time.monotonic()
    reply = door.create(CTX, messages=HI, max_tokens=20)
    elapsed = time.monotonic() - started
    assert reply.stop_reason
    assert elapsed >= 1.0  # the wait the API asked for, not the 10 ms backoff of this test
    stats = emu.stats()
    assert requests_made(emu) == 2
    assert stats["retries"] == 1  # the second attempt carried x-retry-attempt: 1
    row = UsageRecord.objects.get()
    assert (row.outcome, row.attempts) == ("ok", 2)


def test_retry_after_ms_is_read_before_retry_after(door, emu):
    emu.faults([{"kind": "status", "status": 429, "retry_after": 30, "retry_after_ms": 300}])
    started = time.monotonic()
    door.create(CTX, messages=HI, max_tokens=20)
    assert 0.3 <= time.monotonic() - started < 5


def test_a_wait_longer_than_the_feature_allows_fails_at_once_saying_when(door, emu, settings):
    settings.CLAUDE_FEATURES = {**settings.CLAUDE_FEATURES, "retry-test": {"max_wait": 2}}
    emu.faults([{"kind": "status", "status": 429, "retry_after": 45}])
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        door.create(CTX, messages=HI, max_tokens=20)
    assert time.monotonic() - started < 2
    assert caught.value.user_message == "Too many requests right now; try again in 45 s."
    assert requests_made(emu) == 1


def test_a_400_is_not_retried(door, emu):
    emu.faults([{"kind": "status", "status": 400, "error_type": "invalid_request_error"}])
    with pytest.raises(InvalidRequest) as caught:
        door.create(CTX, messages=HI, max_tokens=20)
    assert caught.value.status == 400
    assert requests_made(emu) == 1
    row = UsageRecord.objects.get()
    assert (row.outcome, row.attempts) == ("invalid_request", 1)


def test_a_spend_limit_429_is_not_retried(door, emu):
    emu.faults(
        [
            {
                "kind": "status",
                "status": 429,
                "error_type": "rate_limit_error",
                "error_code": "enforced_spend_limit_reached",
                "retry_after": 1,
            }
        ]
    )
    with pytest.raises(SpendLimitReached) as caught:
        door.create(CTX, messages=HI, max_tokens=20)
    assert "spend limit" in caught.value.user_message
    assert requests_made(emu) == 1
    assert UsageRecord.objects.get().outcome == "spend_limit"


@pytest.mark.parametrize("status", [408, 409, 500, 529])
def test_timeouts_conflicts_and_server_errors_are_retried(door, emu, status):
    emu.faults([{"kind": "status", "status": status}])
    door.create(CTX, messages=HI, max_tokens=20)
    assert requests_made(emu) == 2
    assert UsageRecord.objects.get().attempts == 2


def test_attempts_stop_at_the_feature_cap(door, emu, settings):
    settings.CLAUDE_FEATURES = {**settings.CLAUDE_FEATURES, "retry-test": {"max_attempts": 2}}
    emu.faults([{"kind": "status", "status": 500, "count": 3}])
    with pytest.raises(ClaudeUnavailable):
        door.create(CTX, messages=HI, max_tokens=20)
    assert requests_made(emu) == 2
    row = UsageRecord.objects.get()
    assert (row.outcome, row.attempts) == ("server_error", 2)


def test_a_dropped_connection_is_retried(door, emu):
    emu.faults([{"kind": "disconnect"}])
    reply = door.create(CTX, messages=HI, max_tokens=20)
    assert reply.stop_reason
    assert UsageRecord.objects.get().attempts == 2


def test_a_large_max_tokens_is_streamed_inside_the_door(door, emu):
    # The SDK refuses a plain request this large (it may outlast its default timeout).
    reply = door.create(CTX, model="claude-haiku-5-5", messages=HI, max_tokens=64_000)
    assert reply.stop_reason == "end_turn"
    assert UsageRecord.objects.get().outcome == "ok"


def test_async_create_retries_the_same_way(door, emu):
    from asgiref.sync import async_to_sync

    emu.faults([{"kind": "status", "status": 529}])
    reply = async_to_sync(door.acreate)(CTX, messages=HI, max_tokens=20)
    assert reply.stop_reason
    assert emu.stats()["retries"] == 1
    assert UsageRecord.objects.get().attempts == 2


def test_retry_after_headers_are_read_like_the_sdk_reads_them():
    import email.utils

    from claudeapp.claude.errors import parse_retry_after

    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after({"retry-after": later}) <= 31
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None


def test_backoff_grows_with_jitter_and_stops_at_the_cap():
    from claudeapp.claude.errors import AttemptFailure, ClaudeUnavailable, InvalidRequest
    from claudeapp.claude.retry import RetryPolicy

    policy = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=8.0)
    overloaded = AttemptFailure(ClaudeUnavailable(), retryable=True, server_fault=True)
    delays = [policy.delay(overloaded, attempt) for attempt in (1, 2, 3, 4)]
    for delay, nominal in zip(delays, (0.5, 1.0, 2.0, 4.0), strict=True):
        assert 0.75 * nominal <= delay <= nominal
    assert policy.delay(overloaded, 5) is None
    bad = AttemptFailure(InvalidRequest(), retryable=False, server_fault=False)
    assert policy.delay(bad, 1) is None
