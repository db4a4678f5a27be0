"""Unit tests of emulator/tools.py: when a tool is called, its input and the answer after a tool
result; and the tool_use block's stream fragments (emulator.model.tool_use_block)."""

from __future__ import annotations

import json
import re

import jiter
import jsonschema
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import ToolUseBlock
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.model import tool_use_block
from emulator.tools import (
    LOOP_TRIGGER,
    answer_after_tool_result,
    plan_tool_call,
    tool_score,
)

WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather forecast for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
SEARCH = {
    "name": "search_documents",
    "description": "Search the knowledge base for passages about a topic",
    "input_schema": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
}


def instance_for(schema: dict, text: str):
    """A small stand-in for part 1's schema-instance generator."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: instance_for(v, text) for k, v in props.items()}
    if kind == "integer":
        return schema.get("minimum", 0)
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return True
    if kind == "array":
        return [instance_for(schema.get("items", {}), text)]
    return " ".join(text.split()[:4]) or "x"


def body_for(*messages, tools=(WEATHER, SEARCH), **extra) -> dict:
    return {"model": "claude-haiku-4-5", "tools": list(tools), "messages": list(messages), **extra}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def test_naming_the_tool_calls_it_with_input_valid_for_its_schema():
    call = plan_tool_call(body_for(user("Please use get_weather for Paris.")), instance_for)
    assert call is not None and call["name"] == "get_weather"
    jsonschema.validate(call["input"], WEATHER["input_schema"])
    parsed = ToolUseBlock.model_validate_json(json.dumps(call), strict=True)
    assert not parsed.model_extra
    assert re.fullmatch(r"toolu_01[A-Za-z0-9]{22}", call["id"])


def test_name_with_spaces_for_underscores_counts_as_naming_it():
    call = plan_tool_call(body_for(user("Can you search documents for tax rules?")), instance_for)
    assert call["name"] == "search_documents"


def test_asking_for_what_the_description_says_calls_it():
    call = plan_tool_call(body_for(user("What is the weather forecast in Oslo?")), instance_for)
    assert call["name"] == "get_weather"


def test_one_shared_word_is_not_enough():
    assert tool_score(WEATHER, "I like the weather.") == 0
    assert plan_tool_call(body_for(user("I like the weather.")), instance_for) is None


def test_unrelated_question_gets_no_tool_call():
    assert plan_tool_call(body_for(user("What is 2 + 2?")), instance_for) is None


def test_no_tools_or_tool_choice_none_never_calls():
    assert plan_tool_call(body_for(user("use get_weather"), tools=()), instance_for) is None
    body = body_for(user("use get_weather"), tool_choice={"type": "none"})
    assert plan_tool_call(body, instance_for) is None


def test_server_tools_are_not_client_tools():
    web = {"type": "web_search_20250305", "name": "web_search"}
    assert plan_tool_call(body_for(user("use web_search"), tools=(web,)), instance_for) is None


def test_forced_choices_are_left_to_the_model():
    # tool_choice any / tool is emulator.model's forced-tool path (one implementation).
    body = body_for(user("use get_weather"), tool_choice={"type": "tool", "name": "get_weather"})
    assert plan_tool_call(body, instance_for) is None
    body = body_for(user("use get_weather"), tool_choice={"type": "any"})
    assert plan_tool_call(body, instance_for) is None
    body = body_for(user("use get_weather"), tool_choice={"type": "auto"})
    assert plan_tool_call(body, instance_for)["name"] == "get_weather"


def test_ids_are_deterministic_per_request():
    body = body_for(user("use get_weather"))
    first = plan_tool_call(body, instance_for)["id"]
    assert plan_tool_call(body_for(user("use get_weather")), instance_for)["id"] == first
    other = plan_tool_call(body_for(user("use get_weather now")), instance_for)["id"]
    assert other != first


def after_result(content, is_error: bool = False, first_user: str = "use get_weather") -> dict:
    result = {"type": "tool_result", "tool_use_id": "toolu_a", "content": content}
    if is_error:
        result["is_error"] = True
    return body_for(
        user(first_user),
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}],
        },
        {"role": "user", "content": [result]},
    )


def test_after_a_tool_result_it_answers_instead_of_calling_again():
    body = after_result("Sunny, 21 C")
    assert plan_tool_call(body, instance_for) is None
    assert answer_after_tool_result(body) == 'The get_weather tool returned: "Sunny, 21 C".'


def test_block_content_is_quoted_too():
    body = after_result([{"type": "text", "text": "Rain"}, {"type": "text", "text": "8 C"}])
    assert answer_after_tool_result(body) == 'The get_weather tool returned: "Rain\n8 C".'


def test_error_results_are_acknowledged_as_errors():
    answer = answer_after_tool_result(after_result("city not found", is_error=True))
    assert answer.startswith('The get_weather tool reported an error: "city not found".')
    assert "returned" not in answer


def test_no_tool_result_means_no_tool_answer():
    assert answer_after_tool_result(body_for(user("hi"))) == ""


def test_loop_trigger_calls_a_tool_on_every_turn():
    body = body_for(user(f"Check the weather forecast for Rome. {LOOP_TRIGGER}"))
    ids = set()
    for turn in range(6):
        call = plan_tool_call(body, instance_for)
        assert call is not None, f"turn {turn}"
        assert call["name"] == "get_weather"
        ids.add(call["id"])
        body["messages"] += [
            {"role": "assistant", "content": [call]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "ok"}],
            },
        ]
    assert len(ids) == 6


def test_loop_trigger_falls_back_to_the_first_tool():
    call = plan_tool_call(body_for(user(LOOP_TRIGGER)), instance_for)
    assert call["name"] == "get_weather"


def test_loop_trigger_in_a_document_does_not_count():
    doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": LOOP_TRIGGER},
    }
    body = after_result("ok")
    body["messages"][0]["content"] = [doc, {"type": "text", "text": "hello"}]
    assert plan_tool_call(body, instance_for) is None


# -- fragments (emulator.model.tool_use_block) -----------------------------------------


def fragments(value: dict) -> list[str]:
    block = tool_use_block("t", value)
    deltas = [d for d, _counted in block.deltas]
    assert deltas[0] == {"type": "input_json_delta", "partial_json": ""}
    return [d["partial_json"] for d in deltas[1:]]


def test_fragments_are_several_and_concatenate_to_the_json():
    value = {"city": "Paris", "unit": "celsius", "days": 3, "note": 'say "hi"\n\u00e9'}
    parts = fragments(value)
    assert len(parts) >= 3
    assert "".join(parts) == json.dumps(value)


def test_deltas_rebuild_the_input_through_the_sdk_accumulator():
    value = {"city": "Paris", "unit": "celsius", "days": 3, "tags": ["a", "b\\c"]}
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}},
        },
    ]
    block = tool_use_block("t", value)
    events += [{"type": "content_block_delta", "index": 0, "delta": d} for d, _ in block.deltas]
    snapshot = None
    bufs: dict[int, bytes] = {}
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot.content[0].input == value == block.final["input"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json, max_size=6))
def test_fragments_always_concatenate_to_valid_json_and_every_prefix_parses(value):
    parts = fragments(value)
    joined = "".join(parts)
    assert joined == json.dumps(value)
    assert json.loads(joined) == value
    if len(joined) >= 8:
        assert len(parts) >= 2
    # The SDK parses the growing buffer in partial mode after each fragment: a cut anywhere
    # (inside an escape too) must never make it raise.
    buffer = ""
    for part in parts:
        buffer += part
        jiter.from_json(buffer.encode(), partial_mode=True)
