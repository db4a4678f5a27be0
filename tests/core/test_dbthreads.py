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


@pytest.mark.django_db(transaction=True)
def test_pool_calls_check_their_connection_once_a_second_not_before_each_call(monkeypatch):
    from django.db import connection, connections
    from django.db.backends.base.base import BaseDatabaseWrapper

    checks: list[int] = []
    wrapper = type(connections["default"])
    real = wrapper.is_usable

    def counted(self: BaseDatabaseWrapper) -> bool:
        checks.append(1)
        return real(self)

    monkeypatch.setattr(wrapper, "is_usable", counted)
    monkeypatch.setattr(dbthreads, "_executor", None)
    monkeypatch.setattr("django.conf.settings.DB_ASYNC_THREADS", 1)  # one thread, one connection

    @dbthreads.parallel_db
    def query() -> tuple[bool, bool]:
        from django.contrib.auth import get_user_model

        get_user_model().objects.exists()
        return connection.connection is not None, connection.settings_dict["CONN_MAX_AGE"] != 0

    async def calls() -> list[tuple[bool, bool]]:
        return [await query() for _ in range(5)]

    results = asyncio.run(calls())
    persistent = results[0][1]
    if persistent:
        # Five calls on one thread's connection: at most one health check (the first tidy's,
        # when the connection was already open), not one `SELECT 1` per call.
        assert len(checks) <= 1, checks
        assert all(open_ for open_, _ in results)
    else:  # SQLite here: each call opens and closes its own connection, as a request does
        assert checks == []
    pool = dbthreads.db_executor()
    pool.submit(connections.close_all).result()
    pool.shutdown()
