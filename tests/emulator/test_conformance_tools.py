"""Client tools with ``tool_choice`` auto over HTTP with the official SDK in strict mode: when
the emulated model calls a tool, its input (valid for the schema, streamed in fragments), the
answer after a tool_result (errors acknowledged) and the loop trigger."""

from __future__ import annotations

import jsonschema
import pytest

from tests.emulator.support import blocks_of, text_of

MODEL = "claude-haiku-5-5"  # no thinking by default: a text preamble comes before the call
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather forecast for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 2},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit", "days"],
        "additionalProperties": False,
    },
}
SEARCH = {
    "name": "search_documents",
    "description": "Search the knowledge base for passages about a topic",
    "input_schema": {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
        "required": ["query"],
    },
}
TOOLS = [WEATHER, SEARCH]
SCHEMAS = {t["name"]: t["input_schema"] for t in TOOLS}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def call(sdk, *messages, **kw):
    return sdk.messages.create(model=MODEL, max_tokens=1000, tools=TOOLS, messages=list(messages),
                               **kw)  # fmt: skip


def continue_with(messages: list[dict], reply, content: str, *, is_error: bool = False) -> list:
    (use,) = blocks_of(reply, "tool_use")
    result = {"type": "tool_result", "tool_use_id": use.id, "content": content}
    if is_error:
        result["is_error"] = True
    return [
        *messages,
        {"role": "assistant", "content": [b.to_dict() for b in reply.content]},
        {"role": "user", "content": [result]},
    ]


def test_naming_a_tool_calls_it_with_input_valid_for_its_schema(sdk):
    reply = call(sdk, user("Please use get_weather for Paris this week."))
    assert reply.stop_reason == "tool_use"
    assert [b.type for b in reply.content] == ["text", "tool_use"]
    assert text_of(reply) == "I'll use the get_weather tool for this."
    (use,) = blocks_of(reply, "tool_use")
    assert use.name == "get_weather" and use.id.startswith("toolu_01")
    jsonschema.validate(use.input, WEATHER["input_schema"])


def test_asking_for_what_a_description_says_calls_that_tool(sdk):
    reply = call(sdk, user("Search the knowledge base for passages about tides."))
    (use,) = blocks_of(reply, "tool_use")
    assert use.name == "search_documents"
    jsonschema.validate(use.input, SEARCH["input_schema"])


def test_the_input_streams_as_several_input_json_delta_fragments(sdk):
    messages = [user("What's the weather forecast in Oslo? Use get_weather.")]
    plain = call(sdk, *messages)
    fragments: list[str] = []
    with sdk.messages.stream(model=MODEL, max_tokens=1000, tools=TOOLS, messages=messages) as s:
        for event in s:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                fragments.append(event.delta.partial_json)
        final = s.get_final_message()
    assert fragments[0] == "" and len([f for f in fragments if f]) > 3
    (use,) = blocks_of(final, "tool_use")
    assert use.input == blocks_of(plain, "tool_use")[0].input  # the SDK rebuilt it
    assert use.id == blocks_of(plain, "tool_use")[0].id  # deterministic per request
    jsonschema.validate(use.input, WEATHER["input_schema"])
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == plain.usage.output_tokens


def test_after_a_tool_result_the_answer_uses_it(sdk):
    messages = [user("Use get_weather: is it cold in Oslo?")]
    reply = call(sdk, *messages)
    answer = call(sdk, *continue_with(messages, reply, "Oslo: -3 C and snowing"))
    assert answer.stop_reason == "end_turn" and not blocks_of(answer, "tool_use")
    assert text_of(answer) == 'The get_weather tool returned: "Oslo: -3 C and snowing".'


def test_an_error_result_is_acknowledged_as_an_error(sdk):
    messages = [user("Use get_weather for Atlantis.")]
    reply = call(sdk, *messages)
    answer = call(sdk, *continue_with(messages, reply, "unknown city", is_error=True))
    text = text_of(answer)
    assert "reported an error" in text and "unknown city" in text
    assert "could not get that result" in text


def test_the_loop_trigger_calls_tools_forever(sdk):
    messages = [user("EMULATOR-TOOL-LOOP: keep fetching the weather forecast.")]
    for n in range(6):
        reply = call(sdk, *messages)
        assert reply.stop_reason == "tool_use", f"iteration {n}"
        (use,) = blocks_of(reply, "tool_use")
        assert use.name == "get_weather"
        jsonschema.validate(use.input, WEATHER["input_schema"])
        messages = continue_with(messages, reply, f"result {n}")
    assert len({m["content"][0]["tool_use_id"] for m in messages[2::2]}) == 6  # fresh ids


def test_no_call_when_nothing_asks_for_a_tool_or_tool_choice_is_none(sdk):
    plain = call(sdk, user("What is two plus two?"))
    assert plain.stop_reason == "end_turn" and text_of(plain).startswith("[offline emulator]")
    named = user("Use get_weather for Paris.")
    assert not blocks_of(call(sdk, named, tool_choice={"type": "none"}), "tool_use")


def test_forced_tools_still_name_their_tool(sdk):
    reply = call(sdk, user("hello"), tool_choice={"type": "tool", "name": "search_documents"})
    assert [b.type for b in reply.content] == ["tool_use"]  # forced: no preamble
    assert reply.content[0].name == "search_documents"


def test_invalid_output_fault_breaks_an_automatic_call_too(emulator_clean):
    emulator_clean.faults([{"kind": "invalid_output"}])
    with emulator_clean.client(max_retries=0) as c:
        reply = call(c, user("Use get_weather for Paris."))
    (use,) = blocks_of(reply, "tool_use")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(use.input, WEATHER["input_schema"])
