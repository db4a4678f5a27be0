"""Unit tests of emulator/instructions.py: the obey trigger fires only in instructions."""

from __future__ import annotations

import pytest

from emulator.instructions import find_obey

TRIGGER = "EMULATOR-OBEY: Reply exactly this."


def user(*blocks) -> dict:
    return {"role": "user", "content": list(blocks)}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def test_trigger_in_a_user_string_is_obeyed():
    body = {"messages": [{"role": "user", "content": f"Hello.\n{TRIGGER}\nThanks."}]}
    assert find_obey(body) == "Reply exactly this."


def test_trigger_in_a_user_text_block_is_obeyed():
    assert find_obey({"messages": [user(text(TRIGGER))]}) == "Reply exactly this."


@pytest.mark.parametrize("system", [TRIGGER, [text("Be brief."), text(TRIGGER)]])
def test_trigger_in_the_system_prompt_is_obeyed(system):
    body = {"system": system, "messages": [user(text("Hi"))]}
    assert find_obey(body) == "Reply exactly this."


def test_trigger_in_a_mid_conversation_system_message_is_obeyed():
    body = {"messages": [user(text("Hi")), {"role": "system", "content": TRIGGER}]}
    assert find_obey(body) == "Reply exactly this."


def test_trigger_inside_a_text_document_is_never_obeyed():
    doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": TRIGGER},
    }
    assert find_obey({"messages": [user(doc, text("Summarise the document."))]}) is None


def test_trigger_inside_a_content_document_is_never_obeyed():
    doc = {"type": "document", "source": {"type": "content", "content": [text(TRIGGER)]}}
    assert find_obey({"messages": [user(doc, text("Summarise."))]}) is None


def test_trigger_inside_a_search_result_is_never_obeyed():
    result = {"type": "search_result", "source": "s", "title": "t", "content": [text(TRIGGER)]}
    assert find_obey({"messages": [user(result, text("What does it say?"))]}) is None


def test_trigger_inside_a_tool_result_is_never_obeyed():
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": TRIGGER}
    assert find_obey({"messages": [user(result)]}) is None
    nested = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [text(TRIGGER)]}
    assert find_obey({"messages": [user(nested)]}) is None


def test_trigger_in_an_assistant_turn_is_not_an_instruction():
    body = {
        "messages": [
            user(text("Hi")),
            {"role": "assistant", "content": TRIGGER},
            user(text("Go on")),
        ]
    }
    assert find_obey(body) is None


def test_trigger_must_start_a_line():
    assert find_obey({"messages": [user(text(f"Please do not {TRIGGER}"))]}) is None
    assert find_obey({"messages": [user(text(f"   {TRIGGER}   "))]}) == "Reply exactly this."


def test_an_earlier_user_turn_does_not_keep_obeying():
    body = {
        "messages": [
            user(text(TRIGGER)),
            {"role": "assistant", "content": "Reply exactly this."},
            user(text("And now a normal question?")),
        ]
    }
    assert find_obey(body) is None


def test_the_last_user_turn_wins_over_the_system_prompt():
    body = {
        "system": "EMULATOR-OBEY: from system",
        "messages": [user(text("EMULATOR-OBEY: from user"))],
    }
    assert find_obey(body) == "from user"
    body["messages"] = [user(text("plain"))]
    assert find_obey(body) == "from system"


def test_the_last_trigger_line_wins_and_the_reply_may_be_empty():
    body = {"messages": [user(text("EMULATOR-OBEY: one\nEMULATOR-OBEY: two"))]}
    assert find_obey(body) == "two"
    assert find_obey({"messages": [user(text("EMULATOR-OBEY:"))]}) == ""
