"""One Redis connection pool per process (sync and asyncio) for the app's own keys."""

from __future__ import annotations

import asyncio
import functools
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

# Connections of one pool: a burst of work waits up to POOL_WAIT_SECONDS for a free one rather
# than failing with "Too many connections" (redis-py's default pool refuses the 101st), and
# connections skip CLIENT SETINFO (two commands, and a package-metadata scan, per connection).
POOL_WAIT_SECONDS = 5


def _pool_kwargs() -> dict:
    return {
        "max_connections": settings.REDIS_MAX_CONNECTIONS,
        "timeout": POOL_WAIT_SECONDS,
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
        "driver_info": None,
    }


@functools.cache
def get_redis() -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(settings.APP_REDIS_URL, **_pool_kwargs())
    return redis.Redis(connection_pool=pool)


def new_async_redis() -> aioredis.Redis:
    """A new asyncio client with its own pool (use `get_async_redis` unless you keep one)."""
    pool = aioredis.BlockingConnectionPool.from_url(settings.APP_REDIS_URL, **_pool_kwargs())
    return aioredis.Redis(connection_pool=pool)


# Keyed weakly by the loop itself: a new loop never inherits a dead loop's connections.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def get_async_redis() -> aioredis.Redis:
    """An asyncio client bound to the running event loop (pools cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = new_async_redis()
        _async_clients[loop] = client
    return client


def key(*parts: object) -> str:
    """A namespaced key: `<REDIS_KEY_PREFIX>:part:part`."""
    return ":".join([settings.REDIS_KEY_PREFIX, *(str(p) for p in parts)])
