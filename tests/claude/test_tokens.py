"""The local token estimate that budgets, the planner and documents rely on."""

from __future__ import annotations

from claudeapp.claude import estimate_tokens
from claudeapp.claude.tokens import estimate_request_tokens


def test_word_pieces_and_punctuation():
    assert estimate_tokens("") == 0
    assert estimate_tokens("Hello, world!") == 4
    assert estimate_tokens("classification") == 2  # pieces of at most 8 word characters
    assert estimate_tokens("   \n\t ") == 0


def test_scripts_without_spaces_count_per_character():
    assert estimate_tokens("日本語のテキストです") >= 10


def test_english_prose_is_about_four_characters_a_token():
    from pydoc_data.topics import topics

    text = topics["assignment"]
    ratio = len(text) / estimate_tokens(text)
    assert 3.0 < ratio < 6.0


def test_request_estimate_adds_roles_tools_and_system():
    messages = [{"role": "user", "content": "hi"}]
    assert estimate_request_tokens(messages=messages) == 4  # 3 for the turn + 1
    tool = {"name": "t", "input_schema": {"type": "object"}}
    with_all = estimate_request_tokens(messages=messages, system="Be brief.", tools=[tool])
    assert with_all > 4 + estimate_tokens("Be brief.")
