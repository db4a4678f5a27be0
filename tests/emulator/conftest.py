"""Shared fixtures for the emulator's tests (they talk HTTP to a real emulator process)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    # Until the project's root conftest exists, nothing else puts the repo on sys.path.
    sys.path.insert(0, str(_ROOT))

PLUGIN = "emulator.pytest_plugin"


def pytest_configure(config: pytest.Config) -> None:
    # The root conftest will list the plugin in ``pytest_plugins``; until then load it here.
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)


@pytest.fixture(scope="session")
def sdk(emulator):
    """A strict sync client without retries (so errors surface as they are sent)."""
    with emulator.client(max_retries=0) as c:
        yield c
