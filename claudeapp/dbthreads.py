"""ORM work from asyncio code, many calls at once, on a thread pool of its own.

Channels' `database_sync_to_async` runs every call on one shared thread by default (Django's
"thread sensitive" mode), and asyncio's default executor has `cpu_count + 4` threads: with two
cores, six. Two hundred replies storing their final rows and ledger entries at the same moment
then wait in line for seconds, mostly for PostgreSQL round trips. Self-contained calls (no
transaction spanning two of them) go to this pool instead: each thread keeps its own connection
(`CONN_MAX_AGE`), up to `DB_ASYNC_THREADS` per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import aclose_old_connections
from django.conf import settings
from django.db import close_old_connections, connections

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pool_thread = threading.local()


def db_executor() -> ThreadPoolExecutor:
    """The process's pool (threads start on demand, so a forked worker child builds its own)."""
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=settings.DB_ASYNC_THREADS, thread_name_prefix="db"
                )
    return _executor


def parallel_db(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``function`` (ORM work) as a coroutine run on the pool, with a database connection of
    its thread's own: many calls can run at once. Use it for self-contained work only.

    Django's connection hygiene (`close_old_connections`: past CONN_MAX_AGE, broken, due a
    health check) runs before a call at most once a second per thread, and always after a
    call that raised: run before every call, it cost a `SELECT 1` health check each time.
    Without persistent connections (CONN_MAX_AGE 0) each call opens and closes its own, as a
    request would."""

    def tidied(*args: Any, **kwargs: Any) -> Any:
        persistent = connections["default"].settings_dict.get("CONN_MAX_AGE") != 0
        now = time.monotonic()
        if (
            not persistent
            or now - getattr(_pool_thread, "tidied_at", -TIDY_SECONDS) >= TIDY_SECONDS
        ):
            close_old_connections()
            _pool_thread.tidied_at = now
        try:
            return function(*args, **kwargs)
        except Exception:
            _pool_thread.tidied_at = -TIDY_SECONDS  # the connection may be broken: check it first
            raise
        finally:
            if not persistent:
                close_old_connections()

    async def call(*args: Any, **kwargs: Any) -> Any:
        runner = sync_to_async(tidied, thread_sensitive=False, executor=db_executor())
        return await runner(*args, **kwargs)

    call.__name__ = getattr(function, "__name__", "parallel_db")
    call.__doc__ = function.__doc__
    call.__wrapped__ = function  # type: ignore[attr-defined]
    return call


# --- consumers -------------------------------------------------------------------------------

TIDY_SECONDS = 1.0
_tidied_at = -TIDY_SECONDS


async def tidy_shared_connections() -> None:
    """Django's per-request connection hygiene (`close_old_connections`: past CONN_MAX_AGE,
    broken, due a health check) for the shared ORM thread, at most once a second per process:
    the first message of a burst pays the hop to that thread, the others go straight on."""
    global _tidied_at
    now = time.monotonic()
    if now - _tidied_at < TIDY_SECONDS:
        return
    _tidied_at = now
    await aclose_old_connections()


class TidyDispatch:
    """For Channels consumers. Channels hops to its one shared ORM thread before *every*
    message a consumer handles, to close that thread's old connections: 64 messages sent at
    once wait in line for that thread before any is looked at. This does it once a second
    (`tidy_shared_connections`). The consumers' own ORM calls go through
    `database_sync_to_async` (tidied around each call) or `parallel_db` (once a second); the
    shared thread's other users (the door's ledger writes) get this once-a-second tidy, as
    they got the per-message one before."""

    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await tidy_shared_connections()
        await handler(message)
