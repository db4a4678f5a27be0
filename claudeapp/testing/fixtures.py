"""Pytest fixtures every app's tests lean on: real worker, live ASGI server, private Redis,
users and logged-in sessions, headless Chromium.

Tests that use a worker or a live server must commit their data:
`@pytest.mark.django_db(transaction=True)`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from claudeapp.testing.ports import free_port
from claudeapp.testing.processes import AsgiServer, CeleryWorker, child_env

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "artifacts"
PASSWORD = "correct-horse-battery-9"  # noqa: S105 - test users only


# --- processes ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker) -> Iterator[CeleryWorker]:
    """A real Celery worker (prefork, 2 processes) on this run's queue and test database."""
    with django_db_blocker.unblock():
        worker = CeleryWorker(env=child_env())
        worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def celery_worker_factory(django_db_setup) -> Iterator[Callable[..., CeleryWorker]]:
    """Start extra workers with env overrides (crash tests); all stopped after the test."""
    started: list[CeleryWorker] = []

    def start(concurrency: int = 1, **env: str) -> CeleryWorker:
        worker = CeleryWorker(env=child_env(**env), concurrency=concurrency)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker) -> Iterator[AsgiServer]:
    """The whole app under uvicorn (HTTP + websockets) on a free port, on the test database."""
    with django_db_blocker.unblock():
        server = AsgiServer(env=child_env())
        server.start()
    yield server
    server.stop()


@pytest.fixture
def asgi_server_factory(django_db_setup) -> Iterator[Callable[..., AsgiServer]]:
    started: list[AsgiServer] = []

    def start(**env: str) -> AsgiServer:
        server = AsgiServer(env=child_env(**env))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def rpm_window() -> Callable[[float], None]:
    """`rpm_window(seconds)`: wait, when need be, until the current calendar minute (the
    requests-per-minute limits' window) has `seconds` left, so that a test counting requests
    does not see its count reset halfway."""

    def wait(seconds: float = 5.0) -> None:
        left = 60 - time.time() % 60
        if left < seconds:
            time.sleep(left + 0.05)

    return wait


@pytest.fixture
def private_redis() -> Iterator[object]:
    """A redis-server of this test's own (the bundled binary), for tests that stop or break it."""
    from claudeapp.embedded_redis import RedisServer

    directory = tempfile.mkdtemp(prefix="claudeapp-private-redis-")
    server = RedisServer(free_port(), directory).start()
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


# --- reference data -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def reference_data(request) -> None:
    """Every test with database access sees the seeded registry, prices and personas, even
    after an earlier transactional test flushed them."""
    if request.node.get_closest_marker("django_db"):
        request.getfixturevalue("_django_db_helper")
    elif "transactional_db" in request.fixturenames:
        request.getfixturevalue("transactional_db")
    elif "db" in request.fixturenames:
        request.getfixturevalue("db")
    else:
        return
    from claudeapp.testing.reference_data import ensure_reference_data

    ensure_reference_data()


# --- users and sessions -------------------------------------------------------------------------


def _make_user(django_user_model, username: str, **extra):
    return django_user_model.objects.create_user(
        username=username, email=f"{username}@example.com", password=PASSWORD, **extra
    )


@pytest.fixture
def user(django_user_model):
    return _make_user(django_user_model, "alice")


@pytest.fixture
def other_user(django_user_model):
    return _make_user(django_user_model, "mallory")


@pytest.fixture
def staff_user(django_user_model):
    return _make_user(django_user_model, "stella", is_staff=True)


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", email="root@example.com", password=PASSWORD
    )


@pytest.fixture
def session_cookie() -> Callable[[object], str]:
    """Returns a function giving a committed session id for a user (for sockets and browsers)."""
    from django.test import Client

    def make(user) -> str:
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    return make


# --- browser ------------------------------------------------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture
def chromium():
    """Debian's Chromium driven by Playwright (no browser download), for one test.

    Playwright's sync API runs an event loop in this thread while it is started, so for that
    time the test process's own ORM calls must be allowed explicitly; stopping it at the end
    of the test (before the database flush) gives the thread back to asyncio.run and
    async_to_sync. The flag never reaches the app's processes (child_env drops it).
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def browser_page(chromium, asgi_server, session_cookie, request):
    """A fresh page; `browser_page.login(user)` puts a session cookie in its context."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15000)

    def login(user) -> None:
        context.add_cookies(
            [{"name": "sessionid", "value": session_cookie(user), "url": asgi_server.url}]
        )

    def screenshot(name: str, width: int | None = None, height: int = 860) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if width:
            page.set_viewport_size({"width": width, "height": height})
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    page.login = login  # type: ignore[attr-defined]
    page.screenshot_as = screenshot  # type: ignore[attr-defined]
    page.base_url = asgi_server.url  # type: ignore[attr-defined]
    yield page
    context.close()
