"""RAG tests run the real thing: documents from CPython's reference topics, the emulator over
HTTP behind the door, a Celery worker and uvicorn for the streamed path, PostgreSQL or SQLite.

Sets are built here without the extraction pipeline (its own tests cover it): documents are
stored `ready` with their text, and chunked by the documents app's own chunker.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.rag.helpers import AnswerSocket, build_set, topic

# Worker and server settings of these tests (they are other processes: environment variables).
LIVE_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.rag.live_settings",
    "CLAUDE_CONFIG_CACHE_SECONDS": "0.5",
    "CLAUDE_USER_RPM": "0",
    "CLAUDE_GLOBAL_RPM": "0",
    "REPLY_COALESCE_MS": "20",
    "REPLY_STOP_POLL_MS": "100",
}


@pytest.fixture(autouse=True)
def rag_urls(settings) -> None:
    settings.ROOT_URLCONF = "tests.rag.urls"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _clear_app_keys() -> None:
    """The door's breaker, limits and spend counters: every test starts clean."""
    from claudeapp.redis import get_redis, key

    client = get_redis()
    names = list(client.scan_iter(match=key("claude", "*"), count=500))
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


@pytest.fixture
def reference_set(user, staff_user):
    """Five Python reference topics, `user` a member (small: the whole set goes in context)."""
    return build_set(
        "Python reference",
        {f"{name}.txt": topic(name) for name in ("if", "while", "for", "try", "with")},
        owner=staff_user,
        members=(user,),
    )


# --- live processes -------------------------------------------------------------------------


def _project_includes_documents() -> bool:
    from django.urls import URLResolver

    from claudeapp.urls import urlpatterns

    return any(isinstance(p, URLResolver) and p.namespace == "documents" for p in urlpatterns)


@pytest.fixture(scope="session")
def asgi_server(asgi_server, django_db_blocker):
    """The shared live server once the project mounts the documents URLs; until then, one of
    our own whose settings mount them (the answers' HTML links into them)."""
    if _project_includes_documents():
        yield asgi_server
        return
    from claudeapp.testing.processes import AsgiServer, child_env

    with django_db_blocker.unblock():
        server = AsgiServer(env=child_env(**LIVE_ENV))
        server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rag_server(asgi_server):
    return asgi_server


@pytest.fixture(scope="session")
def rag_worker(request, django_db_setup, django_db_blocker):
    """The shared worker once the project mounts the documents URLs (the worker renders links
    into them); until then, one of our own."""
    if _project_includes_documents():
        yield request.getfixturevalue("celery_worker")
        return
    from claudeapp.testing.processes import CeleryWorker, child_env

    with django_db_blocker.unblock():
        worker = CeleryWorker(env=child_env(**LIVE_ENV), concurrency=2)
        worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def answer_socket(rag_server, session_cookie):
    """`answer_socket(query, user)` -> AnswerSocket (closed after the test)."""
    from websockets.sync.client import connect

    with contextlib.ExitStack() as stack:

        def open_socket(query_id: int, user: Any) -> AnswerSocket:
            socket = stack.enter_context(
                connect(
                    f"{rag_server.ws_url}/ws/rag/{query_id}/",
                    additional_headers={"Cookie": f"sessionid={session_cookie(user)}"},
                    origin=rag_server.url,
                    open_timeout=10,
                    max_size=None,
                )
            )
            return AnswerSocket(socket)

        yield open_socket


def pytest_configure(config: pytest.Config) -> None:
    import tempfile

    os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="claudeapp-test-media-"))


@pytest.fixture(scope="session", autouse=True)
def close_answer_loop_connections(django_db_setup, django_db_blocker) -> Iterator[None]:
    """The answer runner's ORM calls run on its own event loop's thread: their connection is
    closed before the test database is dropped."""
    yield
    from documents.rag import loop

    with django_db_blocker.unblock():
        loop.close_connections()
