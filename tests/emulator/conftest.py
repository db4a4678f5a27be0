"""Shared fixtures for the emulator's tests (they talk HTTP to a real emulator process).

``emulator``, ``emulator_clean`` and ``emulator_factory`` come from ``emulator.pytest_plugin``,
which the root conftest registers.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sdk(emulator):
    """A strict sync client without retries (so errors surface as they are sent)."""
    with emulator.client(max_retries=0) as c:
        yield c
