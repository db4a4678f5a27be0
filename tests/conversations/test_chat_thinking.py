"""Extended thinking: streamed into a collapsed section above the answer, stored verbatim,
replayed to the model that wrote it and left out for another."""

from __future__ import annotations

import re

from django.utils.html import escape

from tests.conversations.helpers import (
    StreamView,
    done_status,
    finished_reply,
    live,
    save_settings,
    started_id,
)


@live
def test_thinking_streams_into_a_collapsed_section_and_is_replayed_verbatim(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    emulator_clean.config(ttft_ms=20, tokens_per_second=300)
    conversation = make_conversation(model_id="claude-sonnet-5-5")  # thinking always on
    chat = chat_socket(conversation)
    chat.send_message("Why is the sky blue? Think first.")
    message_id = started_id([chat.until(lambda f: 'data-status="streaming"' in f.html)])
    done = chat.until_done(message_id)
    view = StreamView(f"m-{message_id}")
    for frame in chat.frames:
        view.apply(frame.html)
    reply = finished_reply(conversation)
    thinking = reply.content[0]
    assert thinking["type"] == "thinking" and thinking["signature"]
    assert view.thinking.strip() == thinking["thinking"].strip()  # it streamed live
    section = re.search(r'<details class="thinking[^"]*">.*?</details>', done.html, re.S).group(0)
    assert escape(thinking["thinking"][-40:]) in section  # shown...
    assert " open" not in section.split(">")[0]  # ...collapsed
    # The next turn sends it back exactly as stored: the emulator checks its signature.
    chat.frames.clear()
    chat.send_message("And at sunset?")
    assert done_status(chat.until_done().html) == "complete"


@live
def test_switching_model_mid_conversation_leaves_the_old_thinking_out(
    asgi_server, emulator_clean, make_conversation, chat_socket, client
):
    conversation = make_conversation(model_id="claude-sonnet-5-5")
    chat = chat_socket(conversation)
    chat.send_message("First, with Sonnet")
    chat.until_done()
    first = finished_reply(conversation)
    assert first.content[0]["type"] == "thinking"
    save_settings(client, conversation, model_id="claude-opus-5-5", thinking="on")
    chat.frames.clear()
    chat.send_message("Now with Opus")
    done = chat.until_done()
    # Sonnet's signed thinking would be rejected by Opus (400); left out, the turn completes.
    assert done_status(done.html) == "complete", done.html[:500]
    second = finished_reply(conversation)
    assert second.model_id == "claude-opus-5-5"
    first.refresh_from_db()
    assert first.content[0]["type"] == "thinking"  # still stored
