"""The emulator through the official SDK with strict response validation: the happy paths."""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import anthropic
import httpx2
import jsonschema
import pytest
from pydantic import BaseModel

# Thinking is off by default on this model, so these tests see the text alone (always-on
# thinking models are covered in test_conformance_thinking.py).
MODEL = "claude-haiku-5-5"
HELLO = [{"role": "user", "content": "What is the capital of France? Tell me about Paris."}]


def test_create_returns_a_marked_reply_that_quotes_the_user(sdk):
    msg = sdk.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)
    assert isinstance(msg, anthropic.types.Message)
    text = msg.content[0].text
    assert text.startswith("[offline emulator]")
    assert "What is the capital of France?" in text
    assert msg.stop_reason == "end_turn"
    assert msg.model == MODEL
    assert msg.usage.input_tokens > 0
    assert 10 <= msg.usage.output_tokens <= 400
    assert re.fullmatch(r"req_\w+", msg._request_id)
    assert msg.id.startswith("msg_")


def test_stream_text_and_final_message_agree_with_create(sdk):
    plain = sdk.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)
    with sdk.messages.stream(model=MODEL, max_tokens=1000, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == plain.content[0].text == final.content[0].text
    # Roughly one token per delta: the streamed deltas are exactly the output tokens.
    assert len(pieces) == final.usage.output_tokens == plain.usage.output_tokens
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == plain.usage.input_tokens


def test_raw_sse_has_event_lines_pings_and_the_documented_order(emulator):
    body = {"model": MODEL, "max_tokens": 300, "stream": True, "messages": HELLO}
    headers = {"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"}
    resp = httpx2.post(f"{emulator.url}/v1/messages", json=body, headers=headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = re.findall(r"event: (\w+)\ndata: (.*)\n\n", resp.text)
    assert resp.text.count("\n\n") == len(events)  # every event has its event: line
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert "ping" in names
    core = [n for n in names if n != "ping"]
    assert core[1] == "content_block_start" and core[-3] == "content_block_stop"
    assert set(core[2:-3]) == {"content_block_delta"}
    for name, data in events:
        assert f'"type":"{name}"' in data


def test_async_client_create_and_stream(emulator):
    async def main():
        async with emulator.async_client(max_retries=0) as c:
            msg = await c.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)
            async with c.messages.stream(model=MODEL, max_tokens=1000, messages=HELLO) as s:
                text = "".join([t async for t in s.text_stream])
                final = await s.get_final_message()
            return msg, text, final

    msg, text, final = asyncio.run(main())
    assert text == msg.content[0].text
    assert final.usage.output_tokens == msg.usage.output_tokens > 0


class Ticket(BaseModel):
    label: Literal["invoice", "contract", "other"]
    confidence: float
    summary: str
    tags: list[str]
    urgent: bool
    amount: int | None = None


def test_parse_returns_a_valid_pydantic_object_and_classifies_by_keywords(sdk):
    res = sdk.messages.parse(
        model=MODEL,
        max_tokens=1000,
        output_format=Ticket,
        messages=[{"role": "user", "content": "invoice payment amount due"}],
    )
    assert isinstance(res.parsed_output, Ticket)
    assert res.parsed_output.label == "invoice"


def test_parse_in_a_stream(sdk):
    with sdk.messages.stream(
        model="claude-sonnet-5-5",
        max_tokens=1000,
        output_format=Ticket,
        messages=[{"role": "user", "content": "Please review this contract and its clauses"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.parsed_output.label == "contract"


def test_structured_output_validates_against_a_hand_written_schema(sdk):
    schema = {
        "type": "object",
        "properties": {
            "category": {
                "type": "string",
                "enum": ["billing", "shipping", "returns"],
                "description": "billing: invoices and charges; shipping: parcels, delivery "
                "and couriers; returns: refunds and sending goods back",
            },
            "score": {"type": "integer", "minimum": 3, "maximum": 7},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "items": {
                "type": "array",
                "minItems": 2,
                "maxItems": 3,
                "items": {"$ref": "#/$defs/Item"},
            },
            "note": {"anyOf": [{"type": "string", "minLength": 30}, {"type": "null"}]},
        },
        "required": ["category", "score", "ratio", "items", "note"],
        "additionalProperties": False,
        "$defs": {
            "Item": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
                "required": ["sku", "qty"],
                "additionalProperties": False,
            }
        },
    }
    msg = sdk.messages.create(
        model=MODEL,
        max_tokens=2000,
        output_config={"format": {"type": "json_schema", "schema": schema}},
        messages=[{"role": "user", "content": "My parcel never arrived, the courier lost it."}],
    )
    import json

    value = json.loads(msg.content[0].text)
    jsonschema.validate(value, schema)
    assert value["category"] == "shipping"  # from the description mapping


WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}
CLOCK = {
    "name": "get_time",
    "description": "Current local time in a timezone",
    "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}},
}


def test_forced_tool_on_an_older_model(sdk):
    msg = sdk.messages.create(
        model="claude-haiku-4-5",
        max_tokens=500,
        tools=[CLOCK, WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Is it cold in Oslo? Answer in fahrenheit."}],
    )
    assert msg.stop_reason == "tool_use"
    (block,) = msg.content
    assert block.type == "tool_use" and block.name == "get_weather"
    jsonschema.validate(block.input, WEATHER["input_schema"])
    assert block.input["unit"] == "fahrenheit"


def test_tool_choice_any_streams_input_json_the_sdk_accumulates(sdk):
    with sdk.messages.stream(
        model="claude-haiku-4-5-20251001",
        max_tokens=500,
        tools=[CLOCK, WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "what is the weather like in Rome"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].name == "get_weather"  # the tool the input talks about
    jsonschema.validate(final.content[0].input, WEATHER["input_schema"])


BIG_REQUEST = {
    "model": "claude-opus-4-5",
    "system": [{"type": "text", "text": "You are terse."}],
    "tools": [WEATHER],
    "messages": [
        {"role": "user", "content": "Hello there, how are you today?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Fine, thanks."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Summarise this document, please."},
                {
                    "type": "document",
                    "source": {
                        "type": "text",
                        "media_type": "text/plain",
                        "data": "Grass is green.",
                    },
                },
            ],
        },
    ],
}


@pytest.mark.parametrize(
    "request_body",
    [{"model": MODEL, "messages": HELLO}, BIG_REQUEST],
    ids=["simple", "tools-system-document"],
)
def test_count_tokens_equals_usage_input_tokens(sdk, request_body):
    counted = sdk.messages.count_tokens(**request_body)
    msg = sdk.messages.create(max_tokens=200, **request_body)
    assert counted.input_tokens == msg.usage.input_tokens > 0


def test_determinism_and_seed(emulator, emulator_clean, sdk):
    kw = {"model": MODEL, "max_tokens": 1000, "messages": HELLO}
    first = sdk.messages.create(**kw).content[0].text
    assert sdk.messages.create(**kw).content[0].text == first
    emulator_clean.config(seed=7)
    seeded = sdk.messages.create(**kw).content[0].text
    assert seeded != first
    assert sdk.messages.create(**kw).content[0].text == seeded


def test_other_inputs_give_other_lengths(sdk):
    lengths = {
        sdk.messages.create(
            model=MODEL, max_tokens=1000, messages=[{"role": "user", "content": f"question {i}"}]
        ).usage.output_tokens
        for i in range(8)
    }
    assert len(lengths) >= 3
    assert min(lengths) >= 15 and max(lengths) <= 400


def test_max_tokens_cuts_the_reply(sdk):
    msg = sdk.messages.create(model=MODEL, max_tokens=7, messages=HELLO)
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 7
    with sdk.messages.stream(model=MODEL, max_tokens=7, messages=HELLO) as s:
        assert len(list(s.text_stream)) == 7
        assert s.get_final_message().stop_reason == "max_tokens"


def test_stop_sequence(sdk):
    messages = [{"role": "user", "content": "Say alpha then STOP and then omega"}]
    msg = sdk.messages.create(
        model=MODEL, max_tokens=500, messages=messages, stop_sequences=["STOP"]
    )
    assert msg.stop_reason == "stop_sequence"
    assert msg.stop_sequence == "STOP"
    assert msg.content[0].text.endswith("Say alpha then ")
    with sdk.messages.stream(
        model=MODEL, max_tokens=500, messages=messages, stop_sequences=["STOP"]
    ) as s:
        final = s.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "STOP")
    assert final.content[0].text == msg.content[0].text


def test_prefill_is_accepted_on_models_that_take_it(sdk):
    msg = sdk.messages.create(
        model="claude-opus-4-5",
        max_tokens=100,
        messages=[*HELLO, {"role": "assistant", "content": "The answer is"}],
    )
    assert msg.content[0].text


def test_models_list_pages_and_retrieve(sdk):
    ids = [m.id for m in sdk.models.list(limit=4)]  # auto-pagination over 4 pages
    assert ids[:3] == ["claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5"]
    assert len(ids) == len(set(ids)) == 13
    page = sdk.models.list(limit=5)
    assert page.has_more and page.first_id == ids[0] and page.last_id == ids[4]
    info = sdk.models.retrieve("claude-sonnet-4-5-20250929")
    assert info.id == "claude-sonnet-4-5"
    assert info.lifecycle == "deprecated"
    assert info.retires_at.isoformat().startswith("2026-11-30")
    assert info.max_input_tokens == 200_000 and info.max_tokens == 64_000
    opus = sdk.models.retrieve("claude-opus-5-5")
    assert opus.capabilities.thinking.types.enabled.supported is False
    assert opus.capabilities.thinking.types.adaptive.supported is True
    assert opus.model_extra["forced_tool_choice"] is False
    assert opus.lifecycle == "active"


def test_every_reply_has_request_id_and_rate_limit_headers(sdk):
    raw = sdk.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=HELLO)
    with pytest.raises(anthropic.NotFoundError) as err:
        sdk.messages.create(model="claude-nope", max_tokens=50, messages=HELLO)
    with sdk.messages.with_streaming_response.create(
        model=MODEL, max_tokens=50, messages=HELLO, stream=True
    ) as streamed:
        stream_headers = streamed.headers
    for headers in (raw.headers, err.value.response.headers, stream_headers):
        assert re.fullmatch(r"req_\w+", headers["request-id"])
        for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
            for part in ("limit", "remaining"):
                assert int(headers[f"anthropic-ratelimit-{kind}-{part}"]) >= 0
            reset = headers[f"anthropic-ratelimit-{kind}-reset"]
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", reset)
    assert err.value.request_id == err.value.response.headers["request-id"]
    assert err.value.body["request_id"] == err.value.request_id


def test_auth_accepts_bearer_and_x_api_key(emulator):
    body = {"model": MODEL, "max_tokens": 20, "messages": HELLO}
    url = f"{emulator.url}/v1/messages"
    version = {"anthropic-version": "2023-06-01"}
    ok_key = httpx2.post(url, json=body, headers={**version, "x-api-key": emulator.api_key})
    ok_bearer = httpx2.post(
        url, json=body, headers={**version, "authorization": f"Bearer {emulator.api_key}"}
    )
    assert ok_key.status_code == ok_bearer.status_code == 200
    missing = httpx2.post(url, json=body, headers=version)
    assert missing.status_code == 401
    err = missing.json()
    assert err["type"] == "error" and err["error"]["type"] == "authentication_error"
    assert err["request_id"] == missing.headers["request-id"]


def test_wrong_key_is_an_authentication_error(emulator):
    with (
        emulator.client(api_key="wrong", max_retries=0) as c,
        pytest.raises(anthropic.AuthenticationError) as err,
    ):
        c.messages.create(model=MODEL, max_tokens=20, messages=HELLO)
    assert err.value.type == "authentication_error"


def test_both_api_versions_work(emulator):
    for version in ("2023-06-01", "2026-10-21"):
        with emulator.client(max_retries=0, default_headers={"anthropic-version": version}) as c:
            assert c.messages.create(model=MODEL, max_tokens=20, messages=HELLO).content
