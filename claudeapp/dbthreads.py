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
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


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
    its thread's own: many calls can run at once. Use it for self-contained work only."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        runner = database_sync_to_async(function, thread_sensitive=False, executor=db_executor())
        return await runner(*args, **kwargs)

    call.__name__ = getattr(function, "__name__", "parallel_db")
    call.__doc__ = function.__doc__
    call.__wrapped__ = function  # type: ignore[attr-defined]
    return call
