"""A reply whose runner died (its web process killed) is marked failed by the beat sweeper."""

from __future__ import annotations

import datetime as dt
import time

from django.utils import timezone

from tests.conversations.helpers import (
    StreamView,
    done_status,
    finished_reply,
    live,
    reply_of,
    started_id,
    wait_for,
)


@live
def test_the_sweeper_fails_a_reply_whose_web_process_died(
    asgi_server, asgi_server_factory, celery_worker, emulator_clean, make_conversation, chat_socket
):
    from claudeapp.replies import sweep_stale_replies

    emulator_clean.config(ttft_ms=50, tokens_per_second=10)
    doomed = asgi_server_factory()
    conversation = make_conversation()
    watcher = chat_socket(conversation)  # another tab, served by a process that survives
    chat = chat_socket(conversation, server=doomed)
    chat.send_message("This server dies in the middle of the reply")
    message_id = started_id([chat.until(lambda f: 'data-status="streaming"' in f.html)])
    chat.until(lambda f: f'id="m-{message_id}-tail" hx-swap-oob' in f.html)
    # The doomed process sends its own sockets a fragment before it writes the fragment to the
    # Redis snapshot (in the background), so a frame on `chat` proves nothing is stored yet. A
    # socket of another process gets text only from Redis (the snapshot, or a delta forwarded
    # after the snapshot was written): once the watcher shows some, the kill can't lose it.
    seen = StreamView(f"m-{message_id}")
    watcher.until(lambda f: seen.apply(f.html) and seen.text.strip())
    wait_for(lambda: reply_of(conversation) is not None)
    doomed.kill()  # SIGKILL: no cleanup of any kind
    time.sleep(1.5)
    assert reply_of(conversation).status == "streaming"

    sweep_stale_replies.delay(stale_after_seconds=1)
    reply = wait_for(lambda: reply_of(conversation, status="failed"), timeout=30)
    assert str(reply.pk) == message_id
    assert "interrupted" in reply.error and reply.error_kind == "runner_lost"
    assert reply.text  # the text it had streamed, from the Redis snapshot
    done = watcher.until_done(message_id)
    assert done_status(done.html) == "failed" and 'data-action="retry"' in done.html
    # The dead runner's hold on the conversation is gone: Retry goes through.
    emulator_clean.config(tokens_per_second=0)
    watcher.send(action="retry", message=message_id)
    assert done_status(watcher.until_done(message_id).html) == "complete"
    assert finished_reply(conversation).status == "complete"


@live
def test_the_sweeper_leaves_live_replies_alone_and_is_safe_to_run_twice(
    celery_worker, make_conversation
):
    from claudeapp.replies import sweep_stale_replies
    from conversations.models import Message

    conversation = make_conversation()
    now = timezone.now()
    alive = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming",
        started_at=now, heartbeat_at=now,
    )  # fmt: skip
    dead = Message.objects.create(
        conversation=conversation, role="assistant", status="streaming",
        started_at=now - dt.timedelta(minutes=5), heartbeat_at=now - dt.timedelta(minutes=5),
    )  # fmt: skip
    sweep_stale_replies.delay()
    sweep_stale_replies.delay()
    wait_for(lambda: Message.objects.get(pk=dead.pk).status == "failed", timeout=30)
    time.sleep(0.5)
    assert Message.objects.get(pk=alive.pk).status == "streaming"
    assert Message.objects.filter(status="failed").count() == 1
