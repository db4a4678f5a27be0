"""One Redis connection pool per process (sync and asyncio) for the app's own keys."""

from __future__ import annotations

import asyncio
import functools
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings


@functools.cache
def get_redis() -> redis.Redis:
    return redis.Redis.from_url(settings.APP_REDIS_URL, socket_timeout=5, socket_connect_timeout=2)


# Keyed weakly by the loop itself: a new loop never inherits a dead loop's connections.
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def get_async_redis() -> aioredis.Redis:
    """An asyncio client bound to the running event loop (pools cannot cross loops)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.APP_REDIS_URL, socket_timeout=5, socket_connect_timeout=2
        )
        _async_clients[loop] = client
    return client


def key(*parts: object) -> str:
    """A namespaced key: `<REDIS_KEY_PREFIX>:part:part`."""
    return ":".join([settings.REDIS_KEY_PREFIX, *(str(p) for p in parts)])
