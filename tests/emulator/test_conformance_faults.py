"""Every fault kind gives the SDK behaviour the reference documents (section B, C)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Literal

import anthropic
import httpx2
import jsonschema
import pydantic
import pytest
from anthropic.types.shared.enforced_spend_limit_reached_error import (
    EnforcedSpendLimitReachedError,
)

from emulator.app import create_app
from emulator.control import is_loopback
from emulator.testing import EmulatorError

# Thinking is off by default on this model, so these tests see the text alone (always-on
# thinking models are covered in test_conformance_thinking.py).
MODEL = "claude-haiku-5-5"
HI = [{"role": "user", "content": "Tell me a story about a lighthouse keeper and the sea."}]
KW = {"model": MODEL, "max_tokens": 500, "messages": HI}


@pytest.fixture
def emu(emulator_clean):
    return emulator_clean


def stream_pieces(client, **kw):
    """Text deltas received before the stream ended (or raised): (pieces, error)."""
    pieces: list[str] = []
    try:
        with client.messages.stream(**{**KW, **kw}) as stream:
            for text in stream.text_stream:
                pieces.append(text)
            return pieces, stream.get_final_message()
    except Exception as exc:  # noqa: BLE001 - the test inspects what was raised
        return pieces, exc


def test_retry_after_is_honoured(emu):
    emu.faults([{"kind": "status", "status": 429, "retry_after": 1}])
    with emu.client(max_retries=1) as c:
        t0 = time.monotonic()
        msg = c.messages.create(**KW)
        elapsed = time.monotonic() - t0
    assert msg.content
    assert elapsed >= 1.0
    stats = emu.stats()
    assert stats["requests"]["POST /v1/messages 429"] == 1
    assert stats["requests"]["POST /v1/messages 200"] == 1
    assert stats["retries"] == 1


def test_retry_after_ms_is_read_first(emu):
    # 700 ms is above the SDK's own first backoff (at most 500 ms), so it must come from us.
    emu.faults([{"kind": "status", "status": 529, "retry_after_ms": 700, "retry_after": 30}])
    with emu.client(max_retries=1) as c:
        t0 = time.monotonic()
        c.messages.create(**KW)
        elapsed = time.monotonic() - t0
    assert 0.7 <= elapsed < 5


@pytest.mark.parametrize(
    ("status", "exc_class", "error_type"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
        (408, anthropic.RequestTimeoutError, "timeout_error"),
        (413, anthropic.RequestTooLargeError, "request_too_large"),
    ],
)
def test_status_faults_raise_the_sdk_class(emu, status, exc_class, error_type):
    emu.faults([{"kind": "status", "status": status}])
    with emu.client(max_retries=0) as c, pytest.raises(exc_class) as err:
        c.messages.create(**KW)
    assert err.value.status_code == status
    assert err.value.type == error_type
    assert err.value.body["request_id"] == err.value.request_id


def test_status_fault_with_error_code_maps_to_the_specific_class(emu):
    emu.faults(
        [
            {
                "kind": "status",
                "status": 429,
                "error_code": "enforced_spend_limit_reached",
                "message": "Spend limit reached.",
            }
        ]  # fmt: skip
    )
    with emu.client(max_retries=0) as c, pytest.raises(EnforcedSpendLimitReachedError) as err:
        c.messages.create(**KW)
    assert err.value.error_code == "enforced_spend_limit_reached"
    assert err.value.api_message == "Spend limit reached."


def test_retried_status_faults_then_success_and_order(emu):
    emu.faults(
        [
            {"kind": "status", "status": 500, "retry_after_ms": 10},
            {"kind": "status", "status": 529, "retry_after_ms": 10},
        ]  # fmt: skip
    )
    with emu.client(max_retries=2) as c:
        assert c.messages.create(**KW).content
    requests = emu.stats()["requests"]
    assert requests == {
        "POST /v1/messages 500": 1,
        "POST /v1/messages 529": 1,
        "POST /v1/messages 200": 1,
    }
    assert emu.stats()["retries"] == 2


def test_should_retry_header_overrides_the_sdk(emu):
    emu.faults([{"kind": "status", "status": 529, "should_retry": False}])
    with emu.client(max_retries=2) as c, pytest.raises(anthropic.OverloadedError):
        c.messages.create(**KW)
    assert emu.stats()["requests"] == {"POST /v1/messages 529": 1}


def test_count_applies_a_fault_n_times(emu):
    emu.faults([{"kind": "status", "status": 529, "count": 2}])
    with emu.client(max_retries=0) as c:
        for _ in range(2):
            with pytest.raises(anthropic.OverloadedError):
                c.messages.create(**KW)
        assert c.messages.create(**KW).content


def test_midstream_error_is_an_api_status_error_with_overloaded_type(emu):
    emu.faults([{"kind": "midstream_error", "after_tokens": 3}])
    with emu.client(max_retries=2) as c:
        pieces, err = stream_pieces(c)
    assert len(pieces) == 3
    assert type(err) is anthropic.APIStatusError
    assert err.status_code == 200
    assert err.type == "overloaded_error"
    # Not retried: one request only.
    assert emu.stats()["requests"] == {"POST /v1/messages 200": 1}


def test_midstream_error_waits_for_a_streaming_call(emu):
    emu.faults([{"kind": "midstream_error", "after_tokens": 0}])
    with emu.client(max_retries=0) as c:
        assert c.messages.create(**KW).stop_reason == "end_turn"
        _, err = stream_pieces(c)
    assert isinstance(err, anthropic.APIStatusError)


def test_dropped_stream_is_a_transport_error(emu):
    emu.faults([{"kind": "disconnect", "after_tokens": 5}])
    with emu.client(max_retries=2) as c:
        pieces, err = stream_pieces(c)
    assert len(pieces) == 5
    # What SDK 2.10.0 really raises mid-stream: httpx2's error, not wrapped by the SDK.
    assert isinstance(err, httpx2.RemoteProtocolError)
    assert "incomplete chunked read" in str(err)


def test_disconnect_on_a_plain_call_is_a_connection_error(emu):
    emu.faults([{"kind": "disconnect"}])
    with emu.client(max_retries=0) as c, pytest.raises(anthropic.APIConnectionError):
        c.messages.create(**KW)
    assert emu.stats()["requests"] == {"POST /v1/messages dropped": 1}


def test_early_end_gives_a_partial_message_without_stop_reason(emu):
    emu.faults([{"kind": "early_end", "after_tokens": 4}])
    with emu.client(max_retries=0) as c:
        pieces, final = stream_pieces(c)
    assert isinstance(final, anthropic.types.Message), final
    assert len(pieces) == 4
    assert final.stop_reason is None
    assert final.content[0].text == "".join(pieces)


def test_stall_before_the_response_times_out(emu):
    emu.faults([{"kind": "stall", "ms": 1500}])
    with emu.client(max_retries=0, timeout=0.4) as c, pytest.raises(anthropic.APITimeoutError):
        c.messages.create(**KW)
    # The emulator notices the client leaving instead of answering nobody 1.1 s later.
    deadline = time.monotonic() + 1
    while not emu.stats()["requests"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.stats()["requests"] == {"POST /v1/messages 499": 1}


def test_stall_applies_to_non_streaming_calls_too(emu):
    emu.faults([{"kind": "stall", "ms": 400, "path": "/v1/messages/count_tokens"}])
    with emu.client(max_retries=0) as c:
        t0 = time.monotonic()
        c.messages.count_tokens(model=MODEL, messages=HI)
    assert time.monotonic() - t0 >= 0.4


def test_stall_mid_stream_times_out_the_read(emu):
    emu.faults([{"kind": "stall", "ms": 1500, "after_tokens": 2}])
    with emu.client(max_retries=0, timeout=0.4) as c:
        pieces, err = stream_pieces(c)
    assert len(pieces) == 2
    assert isinstance(err, httpx2.ReadTimeout)


def test_stall_that_the_client_outwaits_just_delays(emu):
    emu.faults([{"kind": "stall", "ms": 300, "after_tokens": 1}])
    with emu.client(max_retries=0) as c:
        t0 = time.monotonic()
        pieces, final = stream_pieces(c)
    assert time.monotonic() - t0 >= 0.3
    assert final.stop_reason == "end_turn" and len(pieces) == final.usage.output_tokens


def test_refusal(emu):
    emu.faults([{"kind": "refusal", "category": "cyber"}, {"kind": "refusal"}])
    with emu.client(max_retries=0) as c:
        msg = c.messages.create(**KW)
        _, streamed = stream_pieces(c)
    assert msg.stop_reason == "refusal"
    assert msg.stop_details.type == "refusal" and msg.stop_details.category == "cyber"
    assert streamed.stop_reason == "refusal" and streamed.stop_details.category is None


class Verdict(pydantic.BaseModel):
    label: Literal["spam", "ham"]
    reason: str


def test_invalid_output_breaks_parse(emu):
    emu.faults([{"kind": "invalid_output"}])
    with emu.client(max_retries=0) as c:
        with pytest.raises(pydantic.ValidationError):
            c.messages.parse(**KW, output_format=Verdict)
        assert c.messages.parse(**KW, output_format=Verdict).parsed_output.label in ("spam", "ham")


def test_invalid_output_on_a_forced_tool(emu):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    tool = {"name": "weather", "input_schema": schema}
    emu.faults([{"kind": "invalid_output"}])
    with emu.client(max_retries=0) as c:
        msg = c.messages.create(
            **{**KW, "model": "claude-haiku-4-5"}, tools=[tool], tool_choice={"type": "any"}
        )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(msg.content[0].input, schema)


def test_drop_after_effect_carries_out_the_call_then_drops(emu):
    emu.faults([{"kind": "drop_after_effect"}])
    with emu.client(max_retries=0) as c, pytest.raises(anthropic.APIConnectionError):
        c.messages.create(**KW)
    with emu.client(max_retries=1) as c:
        emu.faults([{"kind": "drop_after_effect", "path": "/v1/messages"}])
        assert c.messages.create(**KW).content  # the SDK retries a dropped connection
    stats = emu.stats()
    assert stats["requests"] == {"POST /v1/messages dropped": 2, "POST /v1/messages 200": 1}
    assert stats["faults"] == {"drop_after_effect": 2}


def test_header_scoped_fault(emu):
    emu.faults(
        [{"kind": "status", "status": 500, "header": {"name": "X-Test-Scope", "value": "a"}}]
    )
    with emu.client(max_retries=0, default_headers={"x-test-scope": "b"}) as other:
        assert other.messages.create(**KW).content
    scope_a = {"x-test-scope": "a"}
    with (
        emu.client(max_retries=0, default_headers=scope_a) as scoped,
        pytest.raises(anthropic.InternalServerError),
    ):
        scoped.messages.create(**KW)


def test_model_scoped_fault_matches_aliases(emu):
    emu.faults([{"kind": "status", "status": 529, "model": "claude-haiku-4-5"}])
    with emu.client(max_retries=0) as c:
        assert c.messages.create(**KW).content
        with pytest.raises(anthropic.OverloadedError):
            c.messages.create(**{**KW, "model": "claude-haiku-4-5-20251001"})


def test_prefix_path_fault(emu):
    emu.faults([{"kind": "status", "status": 503, "path": "/v1/models*"}])
    with emu.client(max_retries=0) as c:
        assert c.messages.create(**KW).content
        with pytest.raises(anthropic.ServiceUnavailableError):
            c.models.retrieve(MODEL)


def _pattern(emu, seed):
    emu.reset()
    emu.faults(
        [
            {
                "kind": "status",
                "status": 500,
                "path": "/v1/messages/count_tokens",
                "probability": 0.5,
                "seed": seed,
            }
        ]  # fmt: skip
    )
    out = []
    with emu.client(max_retries=0) as c:
        for _ in range(24):
            try:
                c.messages.count_tokens(model=MODEL, messages=HI)
                out.append(1)
            except anthropic.InternalServerError:
                out.append(0)
    return out


def test_probability_faults_are_seeded(emu):
    first = _pattern(emu, 42)
    assert 0 < sum(first) < len(first)
    assert _pattern(emu, 42) == first
    assert _pattern(emu, 43) != first


def test_retries_count_either_retry_header(emu):
    with emu.client(max_retries=0, default_headers={"x-retry-attempt": "2"}) as c:
        c.messages.count_tokens(model=MODEL, messages=HI)
    with emu.client(max_retries=0, default_headers={"x-retry-attempt": "0"}) as c:
        c.messages.count_tokens(model=MODEL, messages=HI)
    stats = emu.stats()
    assert stats["retries"] == 1
    assert stats["requests"] == {"POST /v1/messages/count_tokens 200": 2}
    assert {"write_tokens", "read_tokens"} <= stats["cache"].keys()
    assert {"created", "ended"} <= stats["batches"].keys()


def test_rate_limit_rpm(emu):
    emu.config(rate_limit_rpm=2)
    with emu.client(max_retries=0) as c:
        for _ in range(2):
            c.messages.count_tokens(model=MODEL, messages=HI)
        with pytest.raises(anthropic.RateLimitError) as err:
            c.messages.count_tokens(model=MODEL, messages=HI)
    headers = err.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["anthropic-ratelimit-requests-limit"] == "2"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_bad_fault_specs_are_refused(emu):
    for bad in ({"kind": "meteor"}, {"kind": "stall"}, {"kind": "status", "probability": 2}):
        with pytest.raises(EmulatorError, match="400"):
            emu.faults([bad])
    assert emu.pending_faults() == []


def test_loopback_check():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.9.1") and is_loopback("::1")
    assert is_loopback("::ffff:127.0.0.1") and is_loopback("localhost")
    assert not is_loopback("10.1.2.3") and not is_loopback("192.168.0.7")
    assert not is_loopback("2001:db8::1") and not is_loopback("example.com")


def _asgi_get(app, path, client_host):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": path, "query_string": b"",
        "headers": [], "client": (client_host, 50000),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_control_endpoints_refuse_remote_clients():
    app = create_app()
    status, body = _asgi_get(app, "/_emulator/stats", "203.0.113.9")
    assert status == 403 and body["error"]["type"] == "permission_error"
    status, body = _asgi_get(app, "/_emulator/stats", "127.0.0.1")
    assert status == 200 and "requests" in body
