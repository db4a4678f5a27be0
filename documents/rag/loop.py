"""One asyncio event loop per process, in a daemon thread, for answers run from sync code (the
Celery task, `manage.py ask`).

A loop per task (`asyncio.run`) would build a new HTTP client, Redis pools and channel-layer
connections for every answer and leave the old ones bound to a closed loop; the door and the
reply protocol keep their clients per loop, so one long-lived loop per process keeps them warm
(the Celery path's time to first text stays close to chat's). Made lazily, per pid: a prefork
child never inherits its parent's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid: int | None = None


def _get_loop() -> asyncio.AbstractEventLoop:
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="rag-answers-loop", daemon=True)
            thread.start()
            _loop, _pid = loop, os.getpid()
        return _loop


def run[T](coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run `coro` on the process's loop and wait for it. If the waiting thread is interrupted
    (a Celery soft time limit), the coroutine is cancelled and given a moment to clean up."""
    future = asyncio.run_coroutine_threadsafe(coro, _get_loop())
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        with contextlib.suppress(concurrent.futures.CancelledError, Exception):
            future.result(5)
        raise


def close_connections() -> None:
    """Close the database connections the loop's ORM calls opened (tests, before the test
    database is dropped)."""
    if _loop is None or _pid != os.getpid() or _loop.is_closed():
        return
    from asgiref.sync import sync_to_async
    from django.db import connections

    run(sync_to_async(connections.close_all, thread_sensitive=True)(), timeout=10)
