"""Extended thinking over HTTP with the official SDK in strict mode: always-on models, budgets,
signatures that bind text and model, and the real API's history errors."""

from __future__ import annotations

import re

import anthropic
import httpx2
import pytest

from tests.emulator.support import blocks_of, text_of, wait_ended

ALWAYS_ON = "claude-opus-5-5"
BUDGET_MODEL = "claude-haiku-4-5"  # enabled with a budget, or off
QUESTION = [{"role": "user", "content": "Why does the moon cause two tides a day?"}]
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather forecast for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_an_always_on_model_thinks_first_and_counts_thinking_as_output(sdk):
    msg = sdk.messages.create(model=ALWAYS_ON, max_tokens=2000, messages=QUESTION)
    assert [b.type for b in msg.content] == ["thinking", "text"]
    thinking = msg.content[0]
    assert "moon" in thinking.thinking and thinking.signature.startswith("Eq")
    assert text_of(msg).startswith("[offline emulator]")
    details = msg.usage.output_tokens_details
    assert 0 < details.thinking_tokens < msg.usage.output_tokens  # part of it, not on top


def test_the_stream_has_thinking_deltas_and_one_signature_delta(sdk):
    plain = sdk.messages.create(model=ALWAYS_ON, max_tokens=2000, messages=QUESTION)
    kinds: list[str] = []
    with sdk.messages.stream(model=ALWAYS_ON, max_tokens=2000, messages=QUESTION) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                kinds.append(event.delta.type)
            elif event.type == "content_block_stop":
                kinds.append(f"stop:{event.content_block.type}")
        final = stream.get_final_message()
    first_stop = kinds.index("stop:thinking")
    assert set(kinds[: first_stop - 1]) == {"thinking_delta"}
    assert kinds[first_stop - 1] == "signature_delta"  # one, just before the block stops
    assert kinds.count("signature_delta") == 1
    assert kinds.count("thinking_delta") == plain.usage.output_tokens_details.thinking_tokens
    assert final.content[0].to_dict() == plain.content[0].to_dict()
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.output_tokens_details.thinking_tokens == (
        plain.usage.output_tokens_details.thinking_tokens
    )


def test_raw_sse_thinking_block_shape(emulator):
    body = {"model": ALWAYS_ON, "max_tokens": 2000, "stream": True, "messages": QUESTION}
    headers = {"x-api-key": emulator.api_key, "anthropic-version": "2026-10-21"}
    text = httpx2.post(f"{emulator.url}/v1/messages", json=body, headers=headers).text
    starts = re.findall(r'"content_block":(\{[^}]*\})', text)
    assert starts[0] == '{"type":"thinking","thinking":"","signature":""}'
    assert text.count('"signature_delta"') == 1
    assert '"output_tokens_details":{"thinking_tokens":' in text  # in message_delta's usage


def test_enabled_thinking_with_a_budget(sdk):
    msg = sdk.messages.create(
        model=BUDGET_MODEL, max_tokens=3000, messages=QUESTION,
        thinking={"type": "enabled", "budget_tokens": 1024},
    )  # fmt: skip
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert 0 < msg.usage.output_tokens_details.thinking_tokens <= 1024
    off = sdk.messages.create(model=BUDGET_MODEL, max_tokens=3000, messages=QUESTION)
    assert [b.type for b in off.content] == ["text"]
    assert off.usage.output_tokens_details.thinking_tokens == 0


def test_omitted_thinking_keeps_the_signature_and_the_token_count(sdk):
    msg = sdk.messages.create(
        model=ALWAYS_ON, max_tokens=2000, messages=QUESTION,
        thinking={"type": "adaptive", "display": "omitted"},
    )  # fmt: skip
    thinking = msg.content[0]
    assert thinking.type == "thinking" and thinking.thinking == "" and thinking.signature
    assert msg.usage.output_tokens_details.thinking_tokens > 0
    follow_up = [*QUESTION, {"role": "assistant", "content": [b.to_dict() for b in msg.content]},
                 {"role": "user", "content": "Thanks."}]  # fmt: skip
    assert sdk.messages.create(model=ALWAYS_ON, max_tokens=2000, messages=follow_up)


def test_adaptive_thinking_sits_out_a_tiny_budget(sdk):
    msg = sdk.messages.create(model=ALWAYS_ON, max_tokens=40, messages=QUESTION)
    assert [b.type for b in msg.content] == ["text"]
    assert msg.usage.output_tokens_details.thinking_tokens == 0


def test_thinking_round_trip_is_accepted(sdk):
    first = sdk.messages.create(model=ALWAYS_ON, max_tokens=2000, messages=QUESTION)
    history = [
        *QUESTION,
        {"role": "assistant", "content": [b.to_dict() for b in first.content]},
        {"role": "user", "content": "And why are spring tides higher?"},
    ]
    second = sdk.messages.create(model=ALWAYS_ON, max_tokens=2000, messages=history)
    assert second.content[0].type == "thinking" and "spring tides" in text_of(second)


def tool_turn(sdk) -> tuple[list[dict], list[dict]]:
    """A conversation up to the tool_use turn, and that turn's content blocks."""
    asked = [{"role": "user", "content": "What is the weather in Oslo? Use get_weather."}]
    reply = sdk.messages.create(model=ALWAYS_ON, max_tokens=2000, tools=[WEATHER], messages=asked)
    assert reply.stop_reason == "tool_use"
    assert [b.type for b in reply.content] == ["thinking", "tool_use"]
    return asked, [b.to_dict() for b in reply.content]


def after_tool(asked, turn, tool_id) -> list[dict]:
    result = {"type": "tool_result", "tool_use_id": tool_id, "content": "Oslo: 4 C, light rain"}
    return [*asked, {"role": "assistant", "content": turn}, {"role": "user", "content": [result]}]


def test_a_tool_use_turn_sent_back_with_its_thinking_is_accepted(sdk):
    asked, turn = tool_turn(sdk)
    answer = sdk.messages.create(
        model=ALWAYS_ON, max_tokens=2000, tools=[WEATHER],
        messages=after_tool(asked, turn, turn[1]["id"]),
    )  # fmt: skip
    assert answer.stop_reason == "end_turn"
    assert "Oslo: 4 C, light rain" in text_of(answer)


def test_a_tool_use_turn_without_its_thinking_block_is_refused(sdk):
    asked, turn = tool_turn(sdk)
    with pytest.raises(anthropic.BadRequestError) as err:
        sdk.messages.create(
            model=ALWAYS_ON, max_tokens=2000, tools=[WEATHER],
            messages=after_tool(asked, turn[1:], turn[1]["id"]),
        )  # fmt: skip
    assert err.value.type == "invalid_request_error"
    assert err.value.api_message.startswith(
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        "`tool_use`."
    )


def test_a_modified_thinking_block_is_refused(sdk):
    first = sdk.messages.create(model=ALWAYS_ON, max_tokens=2000, messages=QUESTION)
    tampered = [b.to_dict() for b in first.content]
    tampered[0]["thinking"] = tampered[0]["thinking"].replace("moon", "sun")
    history = [*QUESTION, {"role": "assistant", "content": tampered},
               {"role": "user", "content": "Go on."}]  # fmt: skip
    with pytest.raises(anthropic.BadRequestError) as err:
        sdk.messages.create(model=ALWAYS_ON, max_tokens=2000, messages=history)
    assert err.value.api_message == "messages.1.content.0: Invalid `signature` in `thinking` block"


def test_a_thinking_block_is_bound_to_its_model(sdk):
    first = sdk.messages.create(model=ALWAYS_ON, max_tokens=2000, messages=QUESTION)
    history = [*QUESTION, {"role": "assistant", "content": [b.to_dict() for b in first.content]},
               {"role": "user", "content": "Go on."}]  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
        sdk.messages.create(model="claude-fable-5-1", max_tokens=2000, messages=history)


def test_thinking_blocks_from_a_batch_line_are_accepted_live(emulator_clean):
    emulator_clean.config(batch_seconds=0)
    with emulator_clean.client(max_retries=0) as c:
        batch = c.messages.batches.create(
            requests=[
                {
                    "custom_id": "t",
                    "params": {"model": ALWAYS_ON, "max_tokens": 2000, "messages": QUESTION},
                }
            ]  # fmt: skip
        )
        wait_ended(c, batch.id)
        (line,) = list(c.messages.batches.results(batch.id))
        content = line.result.message.content
        assert blocks_of(line.result.message, "thinking")
        history = [*QUESTION, {"role": "assistant", "content": [b.to_dict() for b in content]},
                   {"role": "user", "content": "Go on."}]  # fmt: skip
        assert c.messages.create(model=ALWAYS_ON, max_tokens=2000, messages=history)
