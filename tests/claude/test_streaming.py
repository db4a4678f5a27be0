"""Streams: deltas then exactly one Final or Failed, and one ledger row whatever happens."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from claudeapp.claude import (
    CallContext,
    ClaudeUnavailable,
    Failed,
    Final,
    StreamInterrupted,
    TextDelta,
)
from claudeapp.models import UsageRecord
from tests.claude.helpers import requests_made

pytestmark = pytest.mark.django_db
HI = [{"role": "user", "content": "hi"}]
CTX = CallContext("chat", subject=("conversations.message", 42))


def ends(events) -> list:
    return [e for e in events if isinstance(e, Final | Failed)]


def text(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_deltas_then_one_final_and_one_ledger_row(door, emu):
    events = list(door.stream(CTX, messages=HI, max_tokens=40))
    assert isinstance(events[-1], Final) and len(ends(events)) == 1
    final = events[-1].message
    assert text(events) == final.content[0].text
    row = UsageRecord.objects.get()
    assert (row.kind, row.outcome, row.attempts, row.estimated) == ("stream", "ok", 1, False)
    assert (row.input_tokens, row.output_tokens) == (final.usage.input_tokens, 40)
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms
    assert (row.subject_type, row.subject_id) == ("conversations.message", "42")
    assert row.message_id == final.id and row.request_id.startswith("req_")


def test_a_stop_by_the_user_leaves_an_estimated_row(door, emu):
    stream = door.stream(CTX, messages=HI, max_tokens=200)
    received = [next(stream) for _ in range(5)]
    stream.close()
    row = UsageRecord.objects.get()
    assert (row.outcome, row.estimated) == ("stopped", True)
    assert row.input_tokens == 4  # from message_start: the API's count, not a guess
    assert row.output_tokens >= len(received)
    assert row.cost_usd > 0


def test_an_error_before_any_delta_is_retried(door, emu):
    emu.faults([{"kind": "midstream_error", "after_tokens": 0}])
    events = list(door.stream(CTX, messages=HI, max_tokens=20))
    assert isinstance(events[-1], Final)
    assert requests_made(emu) == 2
    assert UsageRecord.objects.get().attempts == 2


def test_an_error_after_deltas_is_not_retried_and_keeps_the_partial(door, emu):
    emu.faults([{"kind": "midstream_error", "after_tokens": 5}])
    events = list(door.stream(CTX, messages=HI, max_tokens=50))
    failed = events[-1]
    assert isinstance(failed, Failed) and len(ends(events)) == 1
    assert isinstance(failed.error, ClaudeUnavailable)
    assert failed.error.kind == "overloaded"
    assert failed.partial.content[0].text == text(events) != ""
    assert failed.partial.stop_reason is None
    assert requests_made(emu) == 1
    row = UsageRecord.objects.get()
    assert (row.outcome, row.estimated, row.attempts) == ("overloaded", True, 1)
    assert row.output_tokens >= 5


def test_a_dropped_connection_mid_stream_fails_with_the_partial(door, emu):
    emu.faults([{"kind": "disconnect", "after_tokens": 5}])
    events = list(door.stream(CTX, messages=HI, max_tokens=50))
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.error.kind == "connection_error"
    assert text(events)
    assert UsageRecord.objects.get().outcome == "connection_error"


def test_a_stream_that_ends_without_message_stop_is_not_complete(door, emu):
    emu.faults([{"kind": "early_end", "after_tokens": 5}])
    events = list(door.stream(CTX, messages=HI, max_tokens=50))
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, StreamInterrupted)
    assert "cut off" in failed.error.user_message
    row = UsageRecord.objects.get()
    assert (row.outcome, row.estimated) == ("interrupted", True)


def test_async_stream_and_its_stop(door, emu):
    async def run() -> tuple[list, list]:
        whole = [e async for e in door.astream(CTX, messages=HI, max_tokens=30)]
        stream = door.astream(CTX, messages=HI, max_tokens=200)
        partial = [await anext(stream) for _ in range(3)]
        await stream.aclose()
        return whole, partial

    whole, partial = async_to_sync(run)()
    assert isinstance(whole[-1], Final) and len(ends(whole)) == 1
    assert len(partial) == 3
    outcomes = list(UsageRecord.objects.order_by("created_at").values_list("outcome", "estimated"))
    assert outcomes == [("ok", False), ("stopped", True)]


def test_async_stream_retries_before_the_first_delta(door, emu):
    emu.faults([{"kind": "status", "status": 529}])

    async def run() -> list:
        return [e async for e in door.astream(CTX, messages=HI, max_tokens=20)]

    events = async_to_sync(run)()
    assert isinstance(events[-1], Final)
    assert UsageRecord.objects.get().attempts == 2


def test_async_on_response_is_called_once_per_answered_attempt(door, emu):
    # A 529 is not an answer to build on: only the attempt that streams calls back.
    emu.faults([{"kind": "status", "status": 529}])
    answered: list[bool] = []

    async def run() -> list:
        stream = door.astream(
            CTX, messages=HI, max_tokens=20, on_response=lambda: answered.append(True)
        )
        return [e async for e in stream]

    events = async_to_sync(run)()
    assert isinstance(events[-1], Final)
    assert answered == [True]
    assert UsageRecord.objects.get().attempts == 2


def test_async_on_response_is_not_called_for_a_refused_call(door, emu, settings, user, rpm_window):
    settings.CLAUDE_USER_RPM = 1
    rpm_window(5)
    ctx = CallContext("chat", user.pk, ("conversations.message", 43))
    answered: list[bool] = []

    async def run() -> list:
        first = [e async for e in door.astream(ctx, messages=HI, max_tokens=5)]
        second = door.astream(
            ctx, messages=HI, max_tokens=5, on_response=lambda: answered.append(True)
        )
        return first + [e async for e in second]

    events = async_to_sync(run)()
    assert isinstance(events[-1], Failed) and events[-1].error.kind == "rate_limited"
    assert answered == []


def test_async_dropped_connection_mid_stream_fails_with_the_partial(door, emu):
    # The asyncio client reads through the SDK's aiohttp transport: a connection dropped
    # mid-body is the same plain-words failure as on the sync path, with the text kept.
    emu.faults([{"kind": "disconnect", "after_tokens": 5}])

    async def run() -> list:
        return [e async for e in door.astream(CTX, messages=HI, max_tokens=200)]

    events = async_to_sync(run)()
    (end,) = ends(events)
    assert isinstance(end, Failed) and end.partial is not None
    assert len(events) > 1 and end.error.kind == "connection_error"  # deltas came first
    assert UsageRecord.objects.get().outcome == end.error.kind


def test_async_client_uses_the_sdks_aiohttp_transport_and_closes_with_its_loop(door, emu):
    from anthropic._vendor.httpx_aiohttp import AiohttpTransport

    async def run():
        client = door._aclient()
        [e async for e in door.astream(CTX, messages=HI, max_tokens=5)]
        return client

    client = async_to_sync(run)()
    transport = client._client._transport
    assert isinstance(transport, AiohttpTransport)
    assert transport.client.closed  # the loop's shutdown closed the session
