"""pytest fixtures that run the emulator for any test in the project.

List it in the root conftest: ``pytest_plugins = ["emulator.pytest_plugin"]``.

* ``emulator`` (session): one emulator process per test session (per xdist worker), unpaced
  (``ttft_ms=0``, ``tokens_per_second=0``) so tests are fast, on ``$CLAUDEAPP_TEST_EMULATOR_PORT``
  when set, else on a free port; see ``EmulatorProcess`` for the
  helpers (``url``, ``api_key``, ``config``, ``faults``, ``clear_faults``, ``reset``,
  ``stats``, ``client``, ``async_client``, ``stop``, ``start``).
* ``emulator_clean`` (function): the same emulator, reset before the test (faults, stats) and
  after it (faults, stats, config back to the session defaults; restarted if the test
  stopped it). Tests that inject faults or change pacing use this one.
* ``emulator_factory`` (function): ``emulator_factory("--state-dir", path)`` starts another
  emulator with extra CLI args; all of them are stopped when the test ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from .testing import EmulatorProcess

TEST_ARGS = ("--ttft-ms", "0", "--tokens-per-second", "0")


# The project's test environment may pick the port up front (so settings can point the app's
# Claude client at it before Django starts); the session emulator then listens there.
PORT_ENV = "CLAUDEAPP_TEST_EMULATOR_PORT"


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    port = int(os.environ.get(PORT_ENV) or 0) or None
    proc = EmulatorProcess(args=TEST_ARGS, port=port).start()
    try:
        yield proc
    finally:
        proc.stop()


def _restore(proc: EmulatorProcess) -> None:
    if not proc.running:
        proc.start()
    proc.reset()
    proc.restore_config()


@pytest.fixture
def emulator_clean(emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    _restore(emulator)
    try:
        yield emulator
    finally:
        _restore(emulator)


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorProcess]]:
    started: list[EmulatorProcess] = []

    def make(*args: str, port: int | None = None) -> EmulatorProcess:
        proc = EmulatorProcess(args=[*TEST_ARGS, *args], port=port)
        started.append(proc)
        return proc.start()

    try:
        yield make
    finally:
        for proc in started:
            proc.stop()
