"""The registry copy for asyncio code: when it has aged, or after a change, a burst of callers
waits for one re-read, not one each; a re-read that a change overtook is not kept."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from claudeapp.claude import config
from claudeapp.testing.reference_data import ensure_reference_data

# The re-read runs on the ORM thread, with a connection of its own: it must see the rows.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def loads(monkeypatch) -> Iterator[list[int]]:
    ensure_reference_data()
    calls: list[int] = []
    real = config._load

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(config, "_load", counted)
    config.invalidate()
    yield calls
    # The ORM thread's connection, opened by the re-reads, is closed like a request's.
    asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())


def test_a_burst_as_the_copy_ages_waits_for_one_reread(loads) -> None:
    old = config.get_config()
    old.loaded_at -= settings.CLAUDE_CONFIG_CACHE_SECONDS + 1

    async def burst():
        return await asyncio.gather(*(config.aget_config() for _ in range(50)))

    got = asyncio.run(burst())
    assert len(loads) == 2  # the first read, and one re-read for all fifty
    assert all(g is got[0] for g in got) and got[0] is not old and config._fresh(got[0])


def test_after_a_change_every_caller_waits_for_the_same_one_reload(loads) -> None:
    config.get_config()
    config.invalidate()  # what saving a price or a route does

    async def burst():
        return await asyncio.gather(*(config.aget_config() for _ in range(20)))

    got = asyncio.run(burst())
    assert len({id(g) for g in got}) == 1 and got[0] is config._current
    assert len(loads) == 2


def test_a_reread_that_a_change_overtook_is_not_kept(loads, monkeypatch) -> None:
    real = config._load

    def overtaken():
        read = real()
        config.invalidate()  # a row saved while the registry was being read
        return read

    monkeypatch.setattr(config, "_load", overtaken)
    assert config.get_config() is not None
    assert config._current is None  # the next caller reads again
