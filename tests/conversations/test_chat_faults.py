"""Faults end a reply as `failed` (reason in plain words, Retry), never as a whole reply."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conversations.helpers import (
    done_status,
    finished_reply,
    live,
    save_settings,
    shown_complete,
    started_id,
)

# Each reaches the door after some tokens streamed (or before any, for the 529 storm).
MIDSTREAM = {"after_tokens": 4}
FAULTS = {
    "overloaded 529 after the retries": [
        {"kind": "status", "status": 529, "error_type": "overloaded_error", "count": 3}
    ],
    "error event mid-stream": [{"kind": "midstream_error", **MIDSTREAM}],
    "dropped connection": [{"kind": "disconnect", **MIDSTREAM}],
    "stream ended early": [{"kind": "early_end", **MIDSTREAM}],
}


def _fail_and_check(chat, conversation, message: str):
    chat.send_message(message)
    start = chat.until(lambda f: 'data-status="streaming"' in f.html)
    message_id = started_id([start])
    done = chat.until_done(message_id, timeout=40)
    reply = finished_reply(conversation)
    assert done_status(done.html) == "failed"
    assert reply.status == "failed"
    assert reply.error and reply.error in done.html.replace("&#x27;", "'")
    assert 'data-action="retry"' in done.html
    assert not shown_complete(chat.frames, message_id)
    return reply, done


@live
@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
def test_a_fault_ends_the_reply_failed_with_the_reason_and_retry(
    fault, asgi_server, emulator_clean, make_conversation, chat_socket
):
    emulator_clean.config(ttft_ms=0, tokens_per_second=200)
    emulator_clean.faults(FAULTS[fault])
    conversation = make_conversation()
    chat = chat_socket(conversation)
    reply, _ = _fail_and_check(chat, conversation, f"Trigger: {fault}")
    if fault.startswith("overloaded"):
        assert "unavailable" in reply.error.lower() or "overloaded" in reply.error.lower()
        assert emulator_clean.stats()["retries"] >= 2  # the door retried before giving up
    else:
        assert reply.text, f"the partial text is kept: {reply.content!r}"


@live
def test_a_failed_reply_can_be_retried_to_completion(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    emulator_clean.faults(FAULTS["overloaded 529 after the retries"])
    conversation = make_conversation()
    chat = chat_socket(conversation)
    failed, _ = _fail_and_check(chat, conversation, "Retry me")
    chat.frames.clear()
    chat.send(action="retry", message=str(failed.pk))
    done = chat.until_done(failed.pk)
    assert done_status(done.html) == "complete"
    reply = finished_reply(conversation)
    assert reply.pk == failed.pk and reply.status == "complete" and not reply.error


@live
def test_a_stalled_stream_fails_after_the_idle_timeout(
    strict_server, emulator_clean, make_conversation, chat_socket
):
    emulator_clean.config(ttft_ms=0, tokens_per_second=100)
    emulator_clean.faults([{"kind": "stall", "after_tokens": 3, "ms": 20000}])
    conversation = make_conversation()
    chat = chat_socket(conversation, server=strict_server)
    reply, _ = _fail_and_check(chat, conversation, "Stall please")
    assert "stopped responding" in reply.error
    assert reply.text


@live
def test_an_open_breaker_fails_fast_in_plain_words(
    strict_server, emulator_clean, make_conversation, chat_socket
):
    emulator_clean.faults(
        [{"kind": "status", "status": 529, "error_type": "overloaded_error", "count": 10}]
    )
    conversation = make_conversation()
    chat = chat_socket(conversation, server=strict_server)
    _fail_and_check(chat, conversation, "Open the breaker")
    emulator_clean.clear_faults()
    before = sum(emulator_clean.stats()["requests"].values())
    reply, _ = _fail_and_check(chat, conversation, "The breaker is open now")
    assert "overloaded" in reply.error.lower() and "try again in" in reply.error
    assert sum(emulator_clean.stats()["requests"].values()) == before  # nothing was sent


@live
def test_a_budget_refusal_fails_in_plain_words(
    strict_server, emulator_clean, make_conversation, chat_socket, user
):
    from claudeapp.models import Budget

    Budget.objects.create(
        scope=Budget.Scope.USER, user=user, period=Budget.Period.DAY, limit_usd=Decimal("0.00001")
    )
    conversation = make_conversation()
    chat = chat_socket(conversation, server=strict_server)
    reply, _ = _fail_and_check(chat, conversation, "Over budget")
    assert "budget" in reply.error.lower() or "limit" in reply.error.lower()
    assert not any(k.startswith("POST /v1/messages") for k in emulator_clean.stats()["requests"])


@live
def test_a_rate_refusal_fails_in_plain_words(
    strict_server, emulator_clean, make_conversation, chat_socket
):
    conversation = make_conversation()
    chat = chat_socket(conversation, server=strict_server)
    for n in range(3):  # the strict server allows three requests a minute per user
        chat.send_message(f"Message {n}")
        chat.until_done()
    reply, _ = _fail_and_check(chat, conversation, "One too many")
    assert "too many requests" in reply.error.lower()


@live
def test_a_truncated_reply_says_so_and_continue_appends_to_it(
    asgi_server, emulator_clean, make_conversation, chat_socket, client
):
    conversation = make_conversation(max_tokens=6)
    chat = chat_socket(conversation)
    chat.send_message("Say a lot of things please, at length")
    done = chat.until_done()
    reply = finished_reply(conversation)
    assert done_status(done.html) == "truncated" and reply.status == "truncated"
    assert "length limit" in done.html and 'data-action="continue"' in done.html
    first_text = reply.text
    save_settings(client, conversation, model_id="claude-haiku-5-5", max_tokens=1024)
    chat.frames.clear()
    chat.send(action="continue", message=str(reply.pk))
    done = chat.until_done(reply.pk)
    reply = finished_reply(conversation)
    assert reply.status == "complete"
    assert reply.text.startswith(first_text) and len(reply.text) > len(first_text)
    part = reply.continuations[0]
    # Haiku 5.5 takes no prefill: a "continue" turn, whose output joins the same reply.
    assert part["mode"] == "turn" and part["prompt"]
    assert reply.text in done.html or first_text in done.html


@live
def test_a_refused_reply_says_so(asgi_server, emulator_clean, make_conversation, chat_socket):
    emulator_clean.faults([{"kind": "refusal", "after_tokens": 3}])
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message("Something the model will refuse")
    done = chat.until_done()
    reply = finished_reply(conversation)
    assert done_status(done.html) == "refused" and reply.status == "refused"
    assert "declined" in done.html
    assert reply.stop_reason == "refusal"


@live
def test_continue_prefills_where_the_model_allows_it(
    asgi_server, emulator_clean, make_conversation, chat_socket, client
):
    # Haiku 4.5 takes a trailing assistant turn (prefill) when thinking is off.
    conversation = make_conversation(model_id="claude-haiku-4-5", max_tokens=8)
    chat = chat_socket(conversation)
    chat.send_message("Tell me about prefill and continuing replies")
    chat.until_done()
    reply = finished_reply(conversation)
    assert reply.status == "truncated"
    save_settings(client, conversation, model_id="claude-haiku-4-5", max_tokens=1024)
    chat.frames.clear()
    chat.send(action="continue", message=str(reply.pk))
    assert done_status(chat.until_done(reply.pk).html) == "complete"
    reply = finished_reply(conversation)
    assert reply.continuations[0]["mode"] == "prefill"
    assert "prompt" not in reply.continuations[0]  # no extra user turn
