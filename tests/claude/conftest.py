"""Fixtures for the door's tests: a clean door state per test, and the door on the emulator
(`emulator` / `emulator_clean` come from the emulator's plugin, loaded by the root conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from claudeapp.testing.reference_data import ensure_reference_data


def _clear_door_keys() -> None:
    from claudeapp.redis import get_redis, key

    client = get_redis()
    names = list(client.scan_iter(match=key("claude", "*"), count=500))
    if names:
        client.delete(*names)


@pytest.fixture(autouse=True)
def door_state() -> Iterator[None]:
    """Each test starts with no breaker, rate, spend or cache state and a fresh config copy."""
    from claudeapp.claude import config

    config.invalidate()
    _clear_door_keys()
    yield
    config.invalidate()
    _clear_door_keys()


@pytest.fixture
def seeded(db) -> None:
    ensure_reference_data()


@pytest.fixture
def door(settings, emulator_clean, seeded):
    """The process's door pointed at the emulator, with short backoffs so retries are quick.
    The emulator is reset (faults, stats) before and after the test."""
    from claudeapp.claude import config, get_door

    settings.ANTHROPIC_BASE_URL = emulator_clean.url
    settings.ANTHROPIC_API_KEY = emulator_clean.api_key
    settings.CLAUDE_RETRY = {**settings.CLAUDE_RETRY, "base_delay": 0.01, "max_delay": 0.05}
    config.invalidate()
    return get_door()


@pytest.fixture
def emu(door, emulator_clean):
    return emulator_clean
