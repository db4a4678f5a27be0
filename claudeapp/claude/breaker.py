"""A circuit breaker per model, its state in Redis so every process shares it.

Closed: calls go through; each overload / server failure (per attempt) adds to a count of
consecutive failures, a success resets it. At `CLAUDE_BREAKER_THRESHOLD` the breaker opens for
`CLAUDE_BREAKER_COOLDOWN_SECONDS`: calls fail fast with `BreakerOpen` (or use the feature's
fallback model) without reaching the API. After the cooldown it is half-open: one caller holds
the probe slot and tries; success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from claudeapp.redis import key

__all__ = ["Breaker", "BreakerState", "LuaScript"]

log = logging.getLogger("claudeapp.claude")


class LuaScript:
    """EVALSHA with a fallback to EVAL, for sync and asyncio clients alike."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, client: redis.Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)

    async def acall(self, client: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


# KEYS: failures, open_until, probe.  ARGV: now_ms, probe_ttl_ms
# -> {state, value}: 0 closed (value = consecutive failures), 1 open (value = ms left),
#    2 half-open and this caller holds the probe
_BEFORE = LuaScript("""
local open_until = tonumber(redis.call('GET', KEYS[2]) or '0')
if open_until == 0 then
  return {0, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
local now = tonumber(ARGV[1])
if now < open_until then return {1, open_until - now} end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[2]) then return {2, 0} end
return {1, math.max(redis.call('PTTL', KEYS[3]), 1000)}
""")

# KEYS: failures, open_until, probe.  ARGV: now_ms, threshold, cooldown_ms, was_probe
# -> {opened (0/1), failures}
_FAILURE = LuaScript("""
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 86400)
if ARGV[4] == '1' or n >= tonumber(ARGV[2]) then
  local cooldown = tonumber(ARGV[3])
  redis.call('SET', KEYS[2], tonumber(ARGV[1]) + cooldown, 'PX', cooldown + 86400000)
  redis.call('DEL', KEYS[3])
  return {1, n}
end
return {0, n}
""")


@dataclass(frozen=True, slots=True)
class BreakerState:
    open: bool
    retry_after: float = 0.0  # seconds, when open
    probe: bool = False  # this caller is the half-open probe
    failures: int = 0


CLOSED = BreakerState(open=False)


class Breaker:
    def keys(self, model_id: str) -> list[str]:
        return self._keys(model_id)

    def state_of(self, raw: list[int] | None) -> BreakerState | None:
        """The state `limits.admit` read in its own round trip (None if it read none)."""
        return self._state(raw) if raw is not None else None

    def _keys(self, model_id: str) -> list[str]:
        return [
            key("claude", "breaker", model_id, "failures"),
            key("claude", "breaker", model_id, "open_until"),
            key("claude", "breaker", model_id, "probe"),
        ]

    @staticmethod
    def _state(raw: list[Any]) -> BreakerState:
        state, value = int(raw[0]), int(raw[1])
        if state == 0:
            return BreakerState(open=False, failures=value)
        if state == 1:
            return BreakerState(open=True, retry_after=value / 1000)
        return BreakerState(open=False, probe=True)

    def _before_args(self) -> list[Any]:
        return [int(time.time() * 1000), int(settings.CLAUDE_BREAKER_PROBE_SECONDS * 1000)]

    def _failure_args(self, state: BreakerState) -> list[Any]:
        return [
            int(time.time() * 1000),
            settings.CLAUDE_BREAKER_THRESHOLD,
            int(settings.CLAUDE_BREAKER_COOLDOWN_SECONDS * 1000),
            "1" if state.probe else "0",
        ]

    def _log_opened(self, model_id: str, failures: int) -> None:
        log.warning(
            "circuit breaker opened",
            extra={
                "event": "claude.breaker_open",
                "model": model_id,
                "failures": failures,
                "cooldown_s": settings.CLAUDE_BREAKER_COOLDOWN_SECONDS,
            },
        )

    # --- sync ---------------------------------------------------------------------------------

    def before(self, client: redis.Redis, model_id: str) -> BreakerState:
        try:
            return self._state(_BEFORE(client, self._keys(model_id), self._before_args()))
        except redis.RedisError:
            log.exception("breaker state unreadable; calling anyway", extra={"model": model_id})
            return CLOSED

    def failure(self, client: redis.Redis, model_id: str, state: BreakerState) -> bool:
        try:
            opened, n = _FAILURE(client, self._keys(model_id), self._failure_args(state))
        except redis.RedisError:
            log.exception("breaker failure not recorded", extra={"model": model_id})
            return False
        if opened:
            self._log_opened(model_id, int(n))
        return bool(opened)

    def success(self, client: redis.Redis, model_id: str, state: BreakerState) -> None:
        if not state.probe and state.failures == 0:
            return  # nothing to reset: saves a round trip on the common path
        try:
            client.delete(*self._keys(model_id))
        except redis.RedisError:
            log.exception("breaker reset failed", extra={"model": model_id})

    # --- asyncio ------------------------------------------------------------------------------

    async def abefore(self, client: Any, model_id: str) -> BreakerState:
        try:
            raw = await _BEFORE.acall(client, self._keys(model_id), self._before_args())
        except redis.RedisError:
            log.exception("breaker state unreadable; calling anyway", extra={"model": model_id})
            return CLOSED
        return self._state(raw)

    async def afailure(self, client: Any, model_id: str, state: BreakerState) -> bool:
        try:
            opened, n = await _FAILURE.acall(
                client, self._keys(model_id), self._failure_args(state)
            )
        except redis.RedisError:
            log.exception("breaker failure not recorded", extra={"model": model_id})
            return False
        if opened:
            self._log_opened(model_id, int(n))
        return bool(opened)

    async def asuccess(self, client: Any, model_id: str, state: BreakerState) -> None:
        if not state.probe and state.failures == 0:
            return
        try:
            await client.delete(*self._keys(model_id))
        except redis.RedisError:
            log.exception("breaker reset failed", extra={"model": model_id})

    def reset(self, client: redis.Redis, model_id: str) -> None:
        client.delete(*self._keys(model_id))
