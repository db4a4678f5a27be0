"""The circuit breaker through the emulator: state in Redis, counted per attempt."""

from __future__ import annotations

import time

import pytest

from claudeapp.claude import BreakerOpen, CallContext, ClaudeUnavailable, Failed, InvalidRequest
from claudeapp.models import UsageRecord
from tests.claude.helpers import requests_made

pytestmark = pytest.mark.django_db
HI = [{"role": "user", "content": "hi"}]
SONNET = "claude-sonnet-5-5"


@pytest.fixture
def no_fallback(settings):
    settings.CLAUDE_ROUTES = {"default": {"model": SONNET}}


def test_five_failed_attempts_open_the_breaker_and_the_next_call_fails_fast(door, emu, no_fallback):
    ctx = CallContext("breaker-test")
    emu.faults([{"kind": "status", "status": 529, "count": 5}])
    with pytest.raises(ClaudeUnavailable):  # attempts 1-3: overloaded, retries used up
        door.create(ctx, messages=HI, max_tokens=10)
    with pytest.raises(BreakerOpen):  # attempts 4-5: the 5th opens it; no 6th attempt
        door.create(ctx, messages=HI, max_tokens=10)
    assert requests_made(emu) == 5

    started = time.monotonic()
    with pytest.raises(BreakerOpen) as caught:
        door.create(ctx, messages=HI, max_tokens=10)
    assert time.monotonic() - started < 0.5
    assert requests_made(emu) == 5  # the emulator never saw the third call
    assert caught.value.user_message.startswith("Claude is overloaded; try again in ")
    assert caught.value.user_message.endswith(" s.")

    rows = list(UsageRecord.objects.order_by("created_at").values_list("outcome", "attempts"))
    assert rows == [("overloaded", 3), ("breaker_open", 2), ("breaker_open", 0)]


def test_the_breaker_is_per_model(door, emu, no_fallback):
    ctx = CallContext("breaker-test")
    emu.faults([{"kind": "status", "status": 529, "count": 5}])
    for _ in range(2):
        with pytest.raises((ClaudeUnavailable, BreakerOpen)):
            door.create(ctx, messages=HI, max_tokens=10)
    with pytest.raises(BreakerOpen):
        door.create(ctx, messages=HI, max_tokens=10)
    assert door.create(ctx, model="claude-haiku-5-5", messages=HI, max_tokens=10).stop_reason


def test_a_stream_fails_fast_too(door, emu, no_fallback):
    ctx = CallContext("breaker-test")
    emu.faults([{"kind": "status", "status": 529, "count": 5}])
    for _ in range(2):
        with pytest.raises((ClaudeUnavailable, BreakerOpen)):
            door.create(ctx, messages=HI, max_tokens=10)
    events = list(door.stream(ctx, messages=HI, max_tokens=10))
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert isinstance(events[0].error, BreakerOpen)
    assert requests_made(emu) == 5


def test_the_fallback_model_is_used_while_the_breaker_is_open(door, emu, settings):
    settings.CLAUDE_ROUTES = {"default": {"model": SONNET, "fallback": "claude-haiku-5-5"}}
    ctx = CallContext("breaker-test")
    emu.faults([{"kind": "status", "status": 529, "model": SONNET, "count": 5}])
    # Call 1: three sonnet attempts fail. Call 2: two more open the breaker, and the call
    # continues at once on the fallback model.
    with pytest.raises(ClaudeUnavailable):
        door.create(ctx, messages=HI, max_tokens=10)
    reply = door.create(ctx, messages=HI, max_tokens=10)
    assert reply.model == "claude-haiku-5-5"
    # While open, calls go straight to the fallback.
    third = door.create(ctx, messages=HI, max_tokens=10)
    assert third.model == "claude-haiku-5-5"
    assert requests_made(emu) == 7
    rows = list(
        UsageRecord.objects.order_by("created_at").values_list(
            "model_id", "requested_model_id", "outcome", "attempts"
        )
    )
    assert rows == [
        (SONNET, "", "overloaded", 3),
        ("claude-haiku-5-5", SONNET, "ok", 3),
        ("claude-haiku-5-5", SONNET, "ok", 1),
    ]


def test_after_the_cooldown_one_probe_closes_it_again(door, emu, settings, no_fallback):
    settings.CLAUDE_BREAKER_COOLDOWN_SECONDS = 0.5
    settings.CLAUDE_BREAKER_THRESHOLD = 2
    ctx = CallContext("breaker-test")
    emu.faults([{"kind": "status", "status": 529, "count": 2}])
    with pytest.raises(BreakerOpen):
        door.create(ctx, messages=HI, max_tokens=10)
    with pytest.raises(BreakerOpen):
        door.create(ctx, messages=HI, max_tokens=10)
    time.sleep(0.6)
    assert door.create(ctx, messages=HI, max_tokens=10).stop_reason  # the probe
    assert door.create(ctx, messages=HI, max_tokens=10).stop_reason  # closed again
    assert requests_made(emu) == 4


def test_a_failed_probe_opens_it_again_at_once(door, emu, settings, no_fallback):
    settings.CLAUDE_BREAKER_COOLDOWN_SECONDS = 0.5
    settings.CLAUDE_BREAKER_THRESHOLD = 2
    ctx = CallContext("breaker-test")
    emu.faults([{"kind": "status", "status": 529, "count": 3}])
    with pytest.raises(BreakerOpen):
        door.create(ctx, messages=HI, max_tokens=10)
    time.sleep(0.6)
    with pytest.raises(BreakerOpen):  # the probe fails (3rd 529) and reopens it
        door.create(ctx, messages=HI, max_tokens=10)
    assert requests_made(emu) == 3


def test_client_errors_do_not_count_against_the_breaker(door, emu, settings, no_fallback):
    settings.CLAUDE_BREAKER_THRESHOLD = 2
    ctx = CallContext("breaker-test")
    emu.faults([{"kind": "status", "status": 400, "count": 3}])
    for _ in range(3):
        with pytest.raises(InvalidRequest):
            door.create(ctx, messages=HI, max_tokens=10)
    assert door.create(ctx, messages=HI, max_tokens=10).stop_reason
