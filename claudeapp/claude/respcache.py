"""Redis caches keyed by a hash of the full request: replies to calls a feature marked
deterministic, and `count_tokens` answers (the count depends on nothing else)."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import redis
from django.conf import settings

from claudeapp.claude import metrics
from claudeapp.redis import key

__all__ = ["ResponseCache", "request_hash"]

log = logging.getLogger("claudeapp.claude")


def request_hash(payload: Any) -> str:
    raw = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(raw.encode()).hexdigest()


class ResponseCache:
    def _reply_key(self, digest: str) -> str:
        return key("claude", "reply", digest)

    def _count_key(self, digest: str) -> str:
        return key("claude", "count", digest)

    @staticmethod
    def _decode(raw: bytes | None) -> Any:
        if raw is None:
            metrics.CACHE.labels("miss").inc()
            return None
        from anthropic.types import Message

        metrics.CACHE.labels("hit").inc()
        return Message.model_validate_json(raw)

    def get_reply(self, client: redis.Redis, digest: str) -> Any:
        try:
            return self._decode(client.get(self._reply_key(digest)))
        except redis.RedisError:
            log.exception("response cache unreadable")
            return None

    async def aget_reply(self, client: Any, digest: str) -> Any:
        try:
            return self._decode(await client.get(self._reply_key(digest)))
        except redis.RedisError:
            log.exception("response cache unreadable")
            return None

    def put_reply(self, client: redis.Redis, digest: str, message: Any) -> None:
        try:
            client.set(
                self._reply_key(digest),
                message.model_dump_json(),
                ex=settings.CLAUDE_RESPONSE_CACHE_SECONDS,
            )
        except redis.RedisError:
            log.exception("response cache not written")

    async def aput_reply(self, client: Any, digest: str, message: Any) -> None:
        try:
            await client.set(
                self._reply_key(digest),
                message.model_dump_json(),
                ex=settings.CLAUDE_RESPONSE_CACHE_SECONDS,
            )
        except redis.RedisError:
            log.exception("response cache not written")

    def get_count(self, client: redis.Redis, digest: str) -> int | None:
        try:
            raw = client.get(self._count_key(digest))
        except redis.RedisError:
            return None
        return int(raw) if raw is not None else None

    async def aget_count(self, client: Any, digest: str) -> int | None:
        try:
            raw = await client.get(self._count_key(digest))
        except redis.RedisError:
            return None
        return int(raw) if raw is not None else None

    def put_count(self, client: redis.Redis, digest: str, tokens: int) -> None:
        try:
            client.set(self._count_key(digest), tokens, ex=settings.CLAUDE_COUNT_CACHE_SECONDS)
        except redis.RedisError:
            log.exception("count cache not written")

    async def aput_count(self, client: Any, digest: str, tokens: int) -> None:
        try:
            await client.set(
                self._count_key(digest), tokens, ex=settings.CLAUDE_COUNT_CACHE_SECONDS
            )
        except redis.RedisError:
            log.exception("count cache not written")
