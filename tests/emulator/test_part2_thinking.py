"""Unit tests of emulator/thinking.py: signatures, thinking text and the history checks."""

from __future__ import annotations

import base64
import json
import random

from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import ThinkingBlock

from emulator.model import thinking_reply_block
from emulator.thinking import (
    INVALID_SIGNATURE_MESSAGE,
    THINKING_REQUIRED_MESSAGE,
    check_thinking_history,
    make_thinking,
    signature_for,
    thinking_block,
    thinking_mode,
    verify_signature,
)
from emulator.tokens import text_tokens

MODEL = "claude-sonnet-4-5"


def test_signature_looks_like_a_real_one_and_is_deterministic():
    sig = signature_for("Let me think.", MODEL)
    assert sig.startswith("Eq")
    assert len(base64.b64decode(sig, validate=True)) == 168
    assert sig == signature_for("Let me think.", MODEL)


def test_signature_binds_text_and_model():
    sig = signature_for("Let me think.", MODEL)
    assert sig != signature_for("Let me think!", MODEL)
    assert sig != signature_for("Let me think.", "claude-opus-4-5")
    assert verify_signature("Let me think.", MODEL, sig)
    assert not verify_signature("Let me think.", "claude-opus-4-5", sig)
    assert not verify_signature("Let me think.", MODEL, None)


def test_thinking_block_validates_as_the_sdk_type():
    block = thinking_block("Some reasoning.", MODEL)
    parsed = ThinkingBlock.model_validate_json(json.dumps(block), strict=True)
    assert not parsed.model_extra
    assert parsed.signature == signature_for("Some reasoning.", MODEL)


def test_make_thinking_is_deterministic_for_the_same_rng_and_mentions_the_prompt():
    one = make_thinking("What is the capital of France?", MODEL, 2048, random.Random(7))
    two = make_thinking("What is the capital of France?", MODEL, 2048, random.Random(7))
    assert one == two
    assert "capital of France" in one
    assert len(one) < 2048 * 4


def test_make_thinking_varies_with_the_seed():
    texts = {make_thinking("Hello", MODEL, None, random.Random(seed)) for seed in range(10)}
    assert len(texts) > 1


def test_make_thinking_respects_a_tiny_budget():
    assert len(make_thinking("x " * 500, MODEL, 5, random.Random(0))) <= 20


def test_streamed_deltas_rebuild_the_block_through_the_sdk_accumulator():
    text = make_thinking("Why is the sky blue?", MODEL, None, random.Random(1))
    block = thinking_reply_block(text, MODEL)
    deltas = [d for d, _counted in block.deltas]
    assert deltas[-1] == {"type": "signature_delta", "signature": signature_for(text, MODEL)}
    assert all(d["type"] == "thinking_delta" for d in deltas[:-1])
    # One output token per thinking_delta; the signature is not a token.
    assert block.tokens == len(deltas) - 1 == text_tokens(text)
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        *({"type": "content_block_delta", "index": 0, "delta": d} for d in deltas),
    ]
    snapshot = None
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs={})
    assert snapshot.content[0].to_dict() == thinking_block(text, MODEL)


# -- history checks --------------------------------------------------------------------


def tool_loop(first_block: dict | None, thinking: dict | None = None) -> dict:
    assistant = [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]
    if first_block is not None:
        assistant.insert(0, first_block)
    body = {
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "Look it up."},
            {"role": "assistant", "content": assistant},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}],
            },
        ],
    }
    if thinking is not None:
        body["thinking"] = thinking
    return body


ENABLED = {"type": "enabled", "budget_tokens": 2048}


def test_round_trip_of_an_untouched_thinking_block_is_accepted():
    body = tool_loop(thinking_block("I should call lookup.", MODEL), ENABLED)
    assert check_thinking_history(body, MODEL) is None


def test_modified_thinking_text_is_rejected_with_the_real_message():
    block = thinking_block("I should call lookup.", MODEL)
    block["thinking"] = "I should call something else."
    body = tool_loop(block, ENABLED)
    assert check_thinking_history(body, MODEL) == (
        f"messages.1.content.0: {INVALID_SIGNATURE_MESSAGE}"
    )
    assert INVALID_SIGNATURE_MESSAGE == "Invalid `signature` in `thinking` block"


def test_thinking_block_from_another_model_is_rejected():
    body = tool_loop(thinking_block("I should call lookup.", "claude-opus-4-5"), ENABLED)
    assert (
        check_thinking_history(body, MODEL) == f"messages.1.content.0: {INVALID_SIGNATURE_MESSAGE}"
    )


def test_missing_signature_is_rejected_even_with_thinking_off():
    body = tool_loop({"type": "thinking", "thinking": "hm"})
    body["messages"].append({"role": "assistant", "content": "ok"})
    assert (
        check_thinking_history(body, MODEL) == f"messages.1.content.0: {INVALID_SIGNATURE_MESSAGE}"
    )


def test_dropped_thinking_block_in_a_tool_loop_is_rejected_with_the_real_message():
    body = tool_loop(None, ENABLED)
    message = check_thinking_history(body, MODEL)
    assert message == "messages.1.content.0.type: " + THINKING_REQUIRED_MESSAGE.format(
        found="tool_use"
    )
    assert message.startswith(
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        "`tool_use`. When `thinking` is enabled, a final `assistant` message must start with "
        "a thinking block"
    )


def test_text_before_tool_use_is_also_not_a_thinking_block():
    body = tool_loop({"type": "text", "text": "Let me check."}, {"type": "adaptive"})
    assert "but found `text`" in check_thinking_history(body, MODEL)


def test_redacted_thinking_satisfies_the_rule():
    body = tool_loop({"type": "redacted_thinking", "data": "EmwKAhgB"}, ENABLED)
    assert check_thinking_history(body, MODEL) is None


def test_missing_thinking_is_fine_when_thinking_is_off():
    assert check_thinking_history(tool_loop(None), MODEL) is None
    assert check_thinking_history(tool_loop(None, {"type": "disabled"}), MODEL) is None


def test_always_on_models_require_it_without_a_thinking_field():
    assert check_thinking_history(tool_loop(None), MODEL, always_on=True) is not None


def test_only_the_current_tool_loop_needs_its_thinking_block():
    body = tool_loop(None, ENABLED)
    body["messages"] += [
        {"role": "assistant", "content": "The answer is 42."},
        {"role": "user", "content": "Thanks. Another question?"},
    ]
    assert check_thinking_history(body, MODEL) is None


def test_consecutive_assistant_messages_count_as_one_turn():
    body = tool_loop(None, ENABLED)
    body["messages"].insert(1, {"role": "assistant", "content": [thinking_block("t", MODEL)]})
    assert check_thinking_history(body, MODEL) is None


def test_thinking_mode():
    assert thinking_mode({"thinking": ENABLED}) == "enabled"
    assert thinking_mode({"thinking": {"type": "adaptive"}}) == "adaptive"
    assert thinking_mode({"thinking": {"type": "between_tools"}}) == "adaptive"
    assert thinking_mode({"thinking": {"type": "disabled"}}, always_on=True) is None
    assert thinking_mode({}) is None
    assert thinking_mode({}, always_on=True) == "adaptive"
