"""Chat tests run the real thing: uvicorn serving the app, the Redis channel layer, the emulator
behind the door, a Celery worker where a task is involved. Sockets are the `websockets` client
with the session cookie and an allowed Origin, as a browser would connect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.conversations.helpers import ChatSocket


def _clear_app_keys() -> None:
    """Breaker, limits and spend counters of the door, and chat locks: every test starts clean."""
    from claudeapp.redis import get_redis, key

    client = get_redis()
    for pattern in (key("claude", "*"), key("chat", "*")):
        names = list(client.scan_iter(match=pattern, count=500))
        if names:
            client.delete(*names)


@pytest.fixture(autouse=True)
def clean_door_state() -> Iterator[None]:
    from claudeapp.claude import config

    config.invalidate()
    _clear_app_keys()
    yield
    _clear_app_keys()
    config.invalidate()


# --- conversations and sockets ----------------------------------------------------------------


@pytest.fixture
def make_conversation(user):
    def make(owner=None, **fields):
        from conversations.models import Conversation

        # Haiku 5.5 with thinking off: text from the first token. Thinking has tests of its own.
        defaults = {"model_id": "claude-haiku-5-5", "max_tokens": 1024, "title": ""}
        defaults.update(fields)
        return Conversation.objects.create(owner=owner or user, **defaults)

    return make


@pytest.fixture
def chat_socket(asgi_server, session_cookie):
    """`chat_socket(conversation, user=None, server=None, origin=None)` -> ChatSocket."""
    from websockets.sync.client import connect

    with contextlib.ExitStack() as stack:

        def open_socket(conversation, user=None, server=None, origin=None, sync=True) -> ChatSocket:
            server = server or asgi_server
            owner = user or conversation.owner
            socket = stack.enter_context(
                connect(
                    f"{server.ws_url}/ws/chat/{conversation.pk}/",
                    additional_headers={"Cookie": f"sessionid={session_cookie(owner)}"},
                    origin=origin or server.url,
                    open_timeout=10,
                    max_size=None,
                )
            )
            chat = ChatSocket(socket)
            if sync:
                chat.send(action="sync", last="", streaming=[])
                chat.recv()  # the sync answer (composer state)
            return chat

        yield open_socket


@pytest.fixture(scope="session")
def strict_server(django_db_setup, django_db_blocker):
    """A second app server with tight limits, for fault tests: the breaker opens after two
    failures and there is no fallback model, three requests per user per minute, a stream
    silent for 1.5 s fails, and the door reads its tables fresh on each call (budgets apply at
    once)."""
    from claudeapp.testing.processes import AsgiServer, child_env

    with django_db_blocker.unblock():
        server = AsgiServer(
            env=child_env(
                CLAUDE_BREAKER_THRESHOLD="2",
                CLAUDE_FALLBACK_MODEL="",
                CLAUDE_USER_RPM="3",
                REPLY_IDLE_TIMEOUT_SECONDS="1.5",
                CLAUDE_CONFIG_CACHE_SECONDS="0",
                CLAUDE_RETRY_BASE_SECONDS="0.05",
            )
        )
        server.start()
    yield server
    server.stop()
