"""The chat in headless Chromium: what a user does and sees. Screenshots go to var/artifacts/."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.conversations.helpers import live

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ASSISTANT = '[data-role="assistant"]'


@pytest.fixture
def page(browser_page):
    return browser_page


def _open_new_chat(page) -> None:
    page.goto(f"{page.base_url}/chat/")
    page.click('[data-action="new-chat-main"]')
    page.wait_for_selector("form#composer textarea[name=content]")
    page.wait_for_function("() => document.querySelector('#chat') !== null")
    time.sleep(0.3)  # the socket opens


def _send(page, text: str) -> None:
    page.fill("form#composer textarea[name=content]", text)
    page.keyboard.press("Enter")


def _body_text(page, message_id: str) -> str:
    return page.inner_text(f'[data-message-id="{message_id}"] .msg-body')


@live
def test_a_user_sends_watches_the_reply_grow_and_finds_it_after_a_reload(
    page, user, emulator_clean
):
    emulator_clean.config(ttft_ms=200, tokens_per_second=40)
    page.login(user)
    _open_new_chat(page)
    page.screenshot_as("chat-new-desktop")
    composer = page.locator("form#composer textarea[name=content]")
    composer.click()
    page.keyboard.type("How do I keep a Python virtualenv out of git?")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    page.keyboard.type("Short answer please.")
    assert composer.input_value().count("\n") == 1
    assert page.query_selector(ASSISTANT) is None
    page.keyboard.press("Enter")
    streaming = page.wait_for_selector(f'{ASSISTANT}[data-status="streaming"]')
    bubble = page.inner_html('[data-role="user"] .msg-bubble')
    assert "git?<br>Short answer please." in bubble
    message_id = streaming.get_attribute("data-message-id")
    assert page.input_value("textarea[name=content]") == ""  # the composer cleared
    assert page.is_visible('[data-action="stop"]')
    page.wait_for_function(
        f"() => document.querySelector('[data-message-id=\"{message_id}\"] .stream-tail')"
        ".textContent.length > 10"
    )
    first = _body_text(page, message_id)
    time.sleep(0.5)
    later = _body_text(page, message_id)
    still = page.get_attribute(f'[data-message-id="{message_id}"]', "data-status")
    assert still == "streaming" and len(later) > len(first)  # growing before completion
    page.screenshot_as("chat-streaming-desktop")

    page.wait_for_selector(
        f'[data-message-id="{message_id}"][data-status="complete"]', timeout=30000
    )
    final = _body_text(page, message_id)
    assert final.startswith("[offline emulator]")
    assert page.is_visible('[data-action="send"]') and page.is_visible('[data-action="regenerate"]')
    title = page.inner_text("#conversation-title")
    assert "virtualenv" in title  # named after the first message
    page.screenshot_as("chat-complete-desktop")
    page.screenshot_as("chat-complete-phone", width=390)

    page.set_viewport_size({"width": 1280, "height": 860})
    page.reload()
    stored = page.wait_for_selector(f'[data-message-id="{message_id}"]')
    assert stored.get_attribute("data-status") == "complete"
    assert _body_text(page, message_id) == final


@live
def test_stop_mid_reply_keeps_what_was_written(page, user, emulator_clean):
    emulator_clean.config(ttft_ms=100, tokens_per_second=15)
    page.login(user)
    _open_new_chat(page)
    _send(page, "Tell me a long story about a lighthouse keeper")
    streaming = page.wait_for_selector(f'{ASSISTANT}[data-status="streaming"]')
    message_id = streaming.get_attribute("data-message-id")
    page.wait_for_function(
        f"() => document.querySelector('[data-message-id=\"{message_id}\"] .stream-tail')"
        ".textContent.length > 20"
    )
    page.click('[data-action="stop"]')
    page.wait_for_selector(f'[data-message-id="{message_id}"][data-status="stopped"]')
    assert len(_body_text(page, message_id)) > 20
    assert "Stopped" in page.inner_text(f'[data-message-id="{message_id}"] .msg-notice')
    assert page.is_visible('[data-action="send"]')
    page.screenshot_as("chat-stopped-desktop")


@live
def test_a_529_storm_shows_a_failed_reply_that_retry_completes(page, user, emulator_clean):
    emulator_clean.config(ttft_ms=50, tokens_per_second=200)
    emulator_clean.faults(
        [{"kind": "status", "status": 529, "error_type": "overloaded_error", "count": 3}]
    )
    page.login(user)
    _open_new_chat(page)
    _send(page, "Give me a deploy checklist for a Django app")
    failed = page.wait_for_selector(f'{ASSISTANT}[data-status="failed"]', timeout=30000)
    message_id = failed.get_attribute("data-message-id")
    notice = page.inner_text(f'[data-message-id="{message_id}"] .msg-notice')
    assert "unavailable" in notice.lower() or "overloaded" in notice.lower()
    assert not page.query_selector(f'[data-message-id="{message_id}"][data-status="complete"]')
    page.screenshot_as("chat-failed-desktop")
    page.screenshot_as("chat-failed-phone", width=390)
    page.set_viewport_size({"width": 1280, "height": 860})
    page.click('[data-action="retry"]')
    page.wait_for_selector(
        f'[data-message-id="{message_id}"][data-status="complete"]', timeout=30000
    )
    assert _body_text(page, message_id).startswith("[offline emulator]")


@live
def test_markdown_replies_look_right_and_settings_open(page, user):
    """A stored conversation with code, a table, thinking and a truncated reply; the settings."""
    from conversations.models import Conversation, Message

    conversation = Conversation.objects.create(
        owner=user, model_id="claude-sonnet-5-5", title="Merging intervals in Python",
        total_cost_usd=Decimal("0.0131"),
    )  # fmt: skip
    code = (
        "Sort by start, then sweep once, extending the last interval while they overlap.\n\n"
        "```python\ndef merge(intervals):\n    merged = []\n"
        "    for start, end in sorted(intervals):\n"
        "        if merged and start <= merged[-1][1]:\n"
        "            merged[-1] = (merged[-1][0], max(merged[-1][1], end))\n        else:\n"
        "            merged.append((start, end))\n    return merged\n```\n\n"
        "| input | output |\n|---|---|\n| `[(1, 3), (2, 6)]` | `[(1, 6)]` |\n\n"
        "It runs in `O(n log n)`; see the [sorting HOWTO](https://docs.python.org/3/howto/sorting.html)."
    )
    Message.objects.create(
        conversation=conversation,
        role="user",
        content=[{"type": "text", "text": "Merge overlapping intervals?"}],
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="complete",
        model_id="claude-sonnet-5-5",
        content=[
            {"type": "thinking", "thinking": "Sort, sweep, extend.", "signature": "s"},
            {"type": "text", "text": code},
        ],
        input_tokens=412,
        cache_read_tokens=1830,
        output_tokens=286,
        cost_usd=Decimal("0.0033"),
        ttft_ms=412,
        duration_ms=3900,
    )
    Message.objects.create(
        conversation=conversation,
        role="user",
        content=[{"type": "text", "text": "And for half-open ones?"}],
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="truncated",
        model_id="claude-sonnet-5-5",
        content=[{"type": "text", "text": "With half-open intervals `[1, 4)` and `[4, 5)` only"}],
        input_tokens=1220,
        output_tokens=64,
        cost_usd=Decimal("0.0021"),
        ttft_ms=380,
        duration_ms=1200,
        stop_reason="max_tokens",
    )
    page.login(user)
    page.goto(f"{page.base_url}/chat/{conversation.pk}/")
    page.wait_for_selector(".codeblock")
    assert page.is_visible('[data-action="continue"]')
    assert page.is_visible(".codeblock .tok-k")  # highlighted
    page.screenshot_as("chat-markdown-desktop")
    page.screenshot_as("chat-markdown-phone", width=390)
    page.set_viewport_size({"width": 1280, "height": 860})
    page.click('[data-open-dialog="settings-dialog"]')
    page.wait_for_selector("#settings-dialog[open]")
    page.screenshot_as("chat-settings-desktop")
    page.select_option('#settings-form select[name="model_id"]', "claude-haiku-4-5")
    page.wait_for_selector('#settings-form input[name="temperature"]')
    page.click('#settings-form button[type="submit"]')
    page.wait_for_selector("#settings-form .saved-note")
    conversation.refresh_from_db()
    assert conversation.model_id == "claude-haiku-4-5"
    page.goto(f"{page.base_url}/chat/")
    page.screenshot_as("chat-list-desktop")
    page.screenshot_as("chat-list-phone", width=390)
