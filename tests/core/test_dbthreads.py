"""Consumers tidy the shared ORM thread's connections once a second, not before every message."""

from __future__ import annotations

import asyncio

import pytest

from claudeapp import dbthreads


class Probe(dbthreads.TidyDispatch):
    def __init__(self) -> None:
        self.handled: list[str] = []

    async def chat_message(self, message: dict) -> None:
        self.handled.append(message["text"])


def test_a_burst_of_messages_tidies_once_and_every_message_is_handled(monkeypatch) -> None:
    tidied: list[float] = []
    monkeypatch.setattr("channels.db.close_old_connections", lambda: tidied.append(1))
    monkeypatch.setattr(dbthreads, "_tidied_at", -dbthreads.TIDY_SECONDS)
    probe = Probe()

    async def burst() -> None:
        await asyncio.gather(
            *(probe.dispatch({"type": "chat.message", "text": str(i)}) for i in range(64))
        )

    asyncio.run(burst())
    assert sorted(probe.handled, key=int) == [str(i) for i in range(64)]
    assert len(tidied) == 1
    # A second later the next message tidies again (connections past CONN_MAX_AGE, broken).
    monkeypatch.setattr(dbthreads, "_tidied_at", dbthreads._tidied_at - dbthreads.TIDY_SECONDS)
    asyncio.run(probe.dispatch({"type": "chat.message", "text": "64"}))
    assert len(tidied) == 2


def test_a_message_without_a_handler_is_refused() -> None:
    with pytest.raises(ValueError, match="No handler for message type nope"):
        asyncio.run(Probe().dispatch({"type": "nope"}))
