"""The reply protocol end to end: uvicorn, the Redis channel layer, the door, the emulator."""

from __future__ import annotations

import re
import time

from tests.conversations.helpers import (
    StreamView,
    done_status,
    finished_reply,
    is_done_frame,
    live,
    reply_of,
    shown_complete,
    started_id,
    wait_for,
    words,
)


def delta_frames(frames, dom):
    view = StreamView(dom)
    applied = [f for f in frames if view.apply(f.html)]
    return view, applied


@live
def test_fragments_come_in_order_the_first_at_once_the_rest_coalesced(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    # 250 tokens a second: a token every 4 ms, so coalescing must bundle them.
    emulator_clean.config(ttft_ms=150, tokens_per_second=250)
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message("Please describe how fragments of a streamed reply are ordered and merged")
    chat.until_done()
    reply = finished_reply(conversation)
    assert reply.status == "complete"

    view, deltas = delta_frames(chat.frames, f"m-{reply.pk}")
    # Order: the page rebuilt from the fragments reads exactly as the stored reply.
    assert words(view.text) == words(reply.text)
    # Coalescing: far fewer frames than tokens, at most ~25 a second, ~40 ms apart.
    assert 2 <= len(deltas) < reply.output_tokens / 2
    gaps = sorted(b.at - a.at for a, b in zip(deltas, deltas[1:], strict=False))
    # Seen from the client a frame can be late and the next on time, so the median speaks.
    assert gaps[len(gaps) // 2] > 0.035, gaps
    span = deltas[-1].at - deltas[0].at
    assert len(deltas) / max(span, 0.001) <= 30


@live
def test_the_first_fragment_is_sent_without_waiting_for_the_coalescing_window(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    # A token every 100 ms: the first fragment must not wait for company.
    emulator_clean.config(ttft_ms=300, tokens_per_second=10)
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.recv  # noqa: B018 - the socket is synced and quiet
    sent = chat.send_message("Hello, first fragment")
    start = chat.until(lambda f: 'data-status="streaming"' in f.html)
    dom = f"m-{started_id([start])}"
    first = chat.until(lambda f: f'id="{dom}-tail"' in f.html and "hx-swap-oob" in f.html)
    view = StreamView(dom)
    view.apply(first.html)
    # One token, at time-to-first-token plus a few milliseconds of our own.
    assert len(view.text) <= 20
    assert first.at - sent < 0.300 + 0.060, first.at - sent
    # The turn itself (user message, placeholder, Stop) went out before Claude answered.
    assert start.at - sent < 0.250
    chat.until_done()


@live
def test_the_streamed_text_is_replaced_by_the_stored_rendered_markdown(
    asgi_server, emulator_clean, make_conversation, chat_socket, client
):
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message("Summarise *streaming* in one line")
    done = chat.until_done()
    reply = finished_reply(conversation)
    assert done_status(done.html) == "complete"
    assert reply.html and reply.html in done.html
    # The replacement holds no streaming parts and offers the actions of a finished reply.
    assert f'id="m-{reply.pk}-tail"' not in done.html
    assert 'data-action="regenerate"' in done.html
    assert 'data-action="send"' in done.html  # Stop turned back into Send
    # Stored verbatim: the content blocks as the API returned them, usage and cost booked.
    assert reply.content[-1]["type"] == "text"
    assert reply.output_tokens > 0 and reply.cost_usd is not None
    assert reply.model_id == "claude-haiku-5-5"
    # ... as the ledger has them (the door's own entry, taken without a query).
    from claudeapp.models import UsageRecord

    row = UsageRecord.objects.get(subject_id=str(reply.pk))
    assert (row.cost_usd, row.output_tokens, row.input_tokens) == (
        reply.cost_usd, reply.output_tokens, reply.input_tokens,
    )  # fmt: skip
    client.force_login(conversation.owner)
    page = client.get(f"/chat/{conversation.pk}/").content.decode()
    assert reply.html in page
    assert f'data-message-id="{reply.pk}" data-status="complete"' in page


@live
def test_stop_from_a_second_socket_keeps_the_partial_text(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    from claudeapp.models import UsageRecord

    emulator_clean.config(ttft_ms=50, tokens_per_second=15)
    conversation = make_conversation()
    first = chat_socket(conversation)
    second = chat_socket(conversation)  # another tab of the same user
    first.send_message("Tell me a long story about stopping streams")
    start = first.until(lambda f: 'data-status="streaming"' in f.html)
    message_id = started_id([start])
    first.until(lambda f: f'id="m-{message_id}-tail" hx-swap-oob' in f.html)
    time.sleep(0.3)
    second.send(action="stop", message=message_id)
    done_first = first.until_done(message_id)
    done_second = second.until_done(message_id)
    assert done_status(done_first.html) == done_status(done_second.html) == "stopped"
    reply = finished_reply(conversation)
    assert reply.status == "stopped"
    assert reply.text  # the partial text is kept...
    assert "Stopped" in done_first.html  # ...and the page says it is incomplete
    assert not shown_complete(first.frames, message_id)
    record = wait_for(
        lambda: UsageRecord.objects.filter(subject_id=str(message_id)).first(), timeout=10
    )
    assert record.outcome == "stopped" and record.estimated


@live
def test_closing_the_tab_does_not_stop_the_reply(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    emulator_clean.config(ttft_ms=50, tokens_per_second=60)
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message("Keep going after I close the tab")
    start = chat.until(lambda f: 'data-status="streaming"' in f.html)
    chat.until(lambda f: 'hx-swap-oob="beforeend"' in f.html)
    chat.close()  # the tab goes away mid-reply
    message_id = started_id([start])
    assert reply_of(conversation).status == "streaming"
    reply = finished_reply(conversation, timeout=30)
    assert str(reply.pk) == message_id
    assert reply.status == "complete" and reply.text.startswith("[offline emulator]")
    # Coming back: the reconnecting tab is told the reply's final state.
    back = chat_socket(conversation, sync=False)
    back.send(action="sync", last="", streaming=[message_id])
    frame = back.recv()
    assert is_done_frame(frame.html, message_id) or f'data-message-id="{message_id}"' in frame.html
    assert 'data-status="complete"' in frame.html


@live
def test_a_late_joiner_gets_the_text_so_far_then_the_live_deltas(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    emulator_clean.config(ttft_ms=50, tokens_per_second=40)
    conversation = make_conversation()
    first = chat_socket(conversation)
    first.send_message("A reply that a second tab joins in the middle of")
    start = first.until(lambda f: 'data-status="streaming"' in f.html)
    message_id = started_id([start])
    dom = f"m-{message_id}"
    early = StreamView(dom)
    while len(early.text) < 40:
        early.apply(first.recv().html)
    late = chat_socket(conversation, sync=False)
    # What a freshly loaded page sends: its last message, and which ones it shows streaming.
    late.send(action="sync", last=message_id, streaming=[message_id])
    late.until_done(message_id)
    first.until_done(message_id)
    reply = finished_reply(conversation)
    late_view = StreamView(dom)
    applied = [f for f in late.frames if late_view.apply(f.html)]
    # Its first fragment carries the whole text so far (a snapshot), not just the latest delta.
    snapshot = StreamView(dom)
    snapshot.apply(applied[0].html)
    assert len(snapshot.text) >= len(early.text) - 5
    assert len(applied) >= 2, "live deltas after the snapshot"
    assert words(late_view.text) == words(reply.text)


@live
def test_a_new_page_shows_the_text_so_far_of_a_streaming_reply(
    asgi_server, emulator_clean, make_conversation, chat_socket, client
):
    emulator_clean.config(ttft_ms=50, tokens_per_second=20)
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message("Reload while I am answering")
    start = chat.until(lambda f: 'data-status="streaming"' in f.html)
    message_id = started_id([start])
    view = StreamView(f"m-{message_id}")
    while len(view.text) < 20:
        view.apply(chat.recv().html)
    client.force_login(conversation.owner)
    page = client.get(f"/chat/{conversation.pk}/").content.decode()
    match = re.search(rf'<span id="m-{message_id}-tail" class="stream-tail">([^<]*)</span>', page)
    assert match and len(match.group(1)) >= 15
    assert 'data-action="stop"' in page
    chat.until_done(message_id)


@live
def test_one_reply_at_a_time_per_conversation(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    emulator_clean.config(ttft_ms=50, tokens_per_second=20)
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message("First question")
    chat.until(lambda f: 'data-status="streaming"' in f.html)
    chat.send_message("Second question, too early")
    error = chat.until(lambda f: 'id="composer-error"' in f.html and "still answering" in f.html)
    assert "Stop it first" in error.html or "stop it first" in error.html
    chat.until_done()
    from conversations.models import Message

    assert Message.objects.filter(conversation=conversation, role="user").count() == 1


@live
def test_an_over_long_message_gets_a_clear_error_and_is_not_stored(
    asgi_server, emulator_clean, make_conversation, chat_socket, settings
):
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message("x" * (settings.CHAT_MAX_MESSAGE_CHARS + 1))
    frame = chat.until(lambda f: 'id="composer-error"' in f.html)
    assert "the limit is" in frame.html
    assert f"{settings.CHAT_MAX_MESSAGE_CHARS:,}" in frame.html
    assert not conversation.messages.exists()


@live
def test_regenerate_replaces_the_latest_reply_in_place(
    asgi_server, emulator_clean, make_conversation, chat_socket
):
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message("Give me an answer to regenerate")
    chat.until_done()
    first = finished_reply(conversation)
    chat.frames.clear()
    chat.send(action="regenerate", message=str(first.pk))
    done = chat.until_done(first.pk)
    assert done_status(done.html) == "complete"
    again = finished_reply(conversation)
    assert again.pk == first.pk and again.status == "complete"
    assert again.run_id != first.run_id
    conversation.refresh_from_db()
    assert conversation.total_cost_usd >= (first.cost_usd or 0) + (again.cost_usd or 0)


@live
def test_a_tab_on_another_web_process_follows_the_reply_live(
    asgi_server, strict_server, emulator_clean, make_conversation, chat_socket
):
    """The runner's own process gets fragments directly; another process's sockets get them
    through the channel layer, because they registered as listeners."""
    emulator_clean.config(ttft_ms=50, tokens_per_second=60)
    conversation = make_conversation()
    here = chat_socket(conversation)
    elsewhere = chat_socket(conversation, server=strict_server)
    here.send_message("Two web processes, one conversation")
    message_id = started_id([here.until(lambda f: 'data-status="streaming"' in f.html)])
    elsewhere.until_done(message_id)
    here.until_done(message_id)
    # The start and the end reach the other process too (through the channel layer).
    assert any(
        'data-status="streaming"' in f.html and message_id in f.html for f in elsewhere.frames
    )
    reply = finished_reply(conversation)
    views = []
    for chat in (here, elsewhere):
        view = StreamView(f"m-{message_id}")
        deltas = [f for f in chat.frames if view.apply(f.html)]
        assert len(deltas) >= 3  # live fragments, not only the final replacement
        views.append(view)
    assert words(views[0].text) == words(views[1].text) == words(reply.text)


@live
def test_the_request_goes_out_before_the_announcement_which_never_waits_in_vain(
    asgi_server_factory, emulator_clean, make_conversation, chat_socket, rpm_window
):
    # The announcement (and the rows) wait for Claude to answer the request, up to
    # CHAT_ANNOUNCE_WAIT_MS: here 20 s, so only the answer, or the end of a call refused
    # before any request, can have opened the way within the 5 s allowed below.
    server = asgi_server_factory(CHAT_ANNOUNCE_WAIT_MS="20000", CLAUDE_USER_RPM="1")
    emulator_clean.config(ttft_ms=300, tokens_per_second=50)
    conversation = make_conversation()
    chat = chat_socket(conversation, server=server)
    rpm_window(20)  # both messages in one minute: the second is over the rate
    sent = chat.send_message("Announce me once the request is answered")
    start = chat.until(lambda f: 'data-status="streaming"' in f.html, timeout=5)
    assert start.at - sent < 5
    message_id = started_id([start])
    done = chat.until_done(message_id, timeout=10)
    assert done_status(done.html) == "complete"
    assert finished_reply(conversation).status == "complete"

    # Over the per-user rate: refused before any request is made; the failure shows at once.
    sent = chat.send_message("And one more, please")
    start = chat.until(lambda f: 'data-status="streaming"' in f.html, timeout=5)
    refused = chat.until_done(started_id([start]), timeout=5)
    assert refused.at - sent < 5
    assert done_status(refused.html) == "failed"
    assert "Too many requests" in refused.html
