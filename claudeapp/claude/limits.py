"""Limits checked before every call: requests per minute (per user, global), concurrent calls,
and USD budgets (per user, per feature, whole site; per day and per month).

One Lua script checks everything and, only when all pass, takes a slot: it counts the request,
holds a concurrency lease and reserves the pre-flight cost estimate on every spend counter. After
the call `settle()` replaces the estimate with the actual cost and returns the lease. Redis only:
no API round trip, no ledger query. Spend counters are nano-dollars (integers), kept for every
user, feature and the site, so a budget added mid-month sees the month's spend so far.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis
from django.conf import settings

from claudeapp.claude.breaker import LuaScript
from claudeapp.claude.config import DoorConfig
from claudeapp.claude.errors import BudgetExceeded, ClaudeError, ConcurrencyLimited, RateLimited
from claudeapp.redis import key

__all__ = ["Admission", "Limits", "nano"]

log = logging.getLogger("claudeapp.claude")
NANO = Decimal(1_000_000_000)
DAY_TTL = 3 * 86400
MONTH_TTL = 35 * 86400

# KEYS: user rpm, global rpm, concurrency zset, breaker failures/open_until/probe, spend counters...
# ARGV: now_ms, user_rpm, global_rpm, max_concurrent, lease_ms, token, estimate_nano,
#       read_breaker (1/0), probe_ms, then (limit_nano or -1 for none, ttl_s) per spend counter
# -> {0, breaker_state, breaker_value} admitted | {1} user rpm | {2} global rpm
#    | {3} concurrency | {4, i, spent} budget i
# The model's breaker is read in the same round trip (as breaker.py's script does), and only
# once the call is admitted, so a refused call never takes the half-open probe slot.
_ADMIT = LuaScript("""
local now = tonumber(ARGV[1])
local user_rpm, global_rpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local max_conc, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local estimate = tonumber(ARGV[7])
if user_rpm > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= user_rpm then return {1} end
if global_rpm > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= global_rpm then return {2} end
if max_conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - lease)
  if redis.call('ZCARD', KEYS[3]) >= max_conc then return {3} end
end
for i = 7, #KEYS do
  local limit = tonumber(ARGV[10 + (i - 7) * 2])
  if limit >= 0 then
    local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
    if spent + estimate > limit then return {4, i - 6, spent} end
  end
end
if user_rpm > 0 then redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], 120) end
if global_rpm > 0 then redis.call('INCR', KEYS[2]); redis.call('EXPIRE', KEYS[2], 120) end
if max_conc > 0 then redis.call('ZADD', KEYS[3], now, ARGV[6]) end
for i = 7, #KEYS do
  redis.call('INCRBY', KEYS[i], estimate)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[11 + (i - 7) * 2]))
end
if ARGV[8] ~= '1' then return {0, -1, 0} end
local open_until = tonumber(redis.call('GET', KEYS[5]) or '0')
if open_until == 0 then return {0, 0, tonumber(redis.call('GET', KEYS[4]) or '0')} end
if now < open_until then return {0, 1, open_until - now} end
if redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[9]) then return {0, 2, 0} end
return {0, 1, math.max(redis.call('PTTL', KEYS[6]), 1000)}
""")


# KEYS: concurrency zset, spend counters...  ARGV: lease token ("" for none), delta_nano
_SETTLE = LuaScript("""
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
for i = 2, #KEYS do redis.call('INCRBY', KEYS[i], ARGV[2]) end
return 0
""")


def nano(usd: Decimal | None) -> int:
    """USD as whole nano-dollars, rounded up (a reservation never undercounts)."""
    if not usd:
        return 0
    return math.ceil(usd * NANO)


@dataclass(slots=True)
class Admission:
    """A call's slot: the counters it reserved, to settle after the call."""

    token: str = ""
    spend_keys: list[str] = field(default_factory=list)
    estimate_nano: int = 0
    concurrency: bool = False
    settled: bool = False
    skipped: bool = False  # Redis was unreachable: the call went ahead unchecked
    breaker: list[int] | None = None  # the model's breaker as read at admission (breaker.py)


def _spend_counters(
    now: dt.datetime, user_id: int | None, feature: str
) -> list[tuple[str, str, str, int]]:
    """(redis key, scope, period, ttl) of every counter a call adds to."""
    day, month = now.strftime("%Y%m%d"), now.strftime("%Y%m")
    out = []
    if user_id is not None:
        out.append((key("claude", "spend", "user", user_id, "day", day), "user", "day", DAY_TTL))
        out.append(
            (key("claude", "spend", "user", user_id, "month", month), "user", "month", MONTH_TTL)
        )
    out.append((key("claude", "spend", "feature", feature, "day", day), "feature", "day", DAY_TTL))
    out.append(
        (key("claude", "spend", "feature", feature, "month", month), "feature", "month", MONTH_TTL)
    )
    out.append((key("claude", "spend", "global", "day", day), "global", "day", DAY_TTL))
    out.append((key("claude", "spend", "global", "month", month), "global", "month", MONTH_TTL))
    return out


def _budget_message(scope: str, period: str, limit: Decimal, feature: str) -> str:
    resets = "at midnight UTC" if period == "day" else "on the 1st of next month (UTC)"
    daily = "daily" if period == "day" else "monthly"
    who = {
        "user": f"Your {daily} Claude budget",
        "feature": f"The {daily} Claude budget for {feature}",
        "global": f"This site's {daily} Claude budget",
    }[scope]
    return f"{who} (${_money(limit)}) is used up; it resets {resets}."


def _money(amount: Decimal) -> str:
    """$12.50, or every significant digit below a cent ($0.003)."""
    if amount >= 1 or amount == amount.quantize(Decimal("0.01")):
        return f"{amount:.2f}"
    return f"{amount.normalize():f}"


class Limits:
    def _prepare(
        self,
        config: DoorConfig,
        *,
        user_id: int | None,
        feature: str,
        estimate_usd: Decimal | None,
        count_request: bool,
        concurrency: bool,
        breaker_keys: list[str] | None,
    ) -> tuple[list[str], list[Any], Admission, list[tuple[str, str, str, int]], dict]:
        now = dt.datetime.now(dt.UTC)
        minute = int(time.time() // 60)
        counters = _spend_counters(now, user_id, feature)
        limits = config.budgets_for(user_id=user_id, feature=feature)
        per_user = settings.CLAUDE_FEATURES.get(feature, {}).get(
            "user_rpm", settings.CLAUDE_USER_RPM
        )
        user_rpm = per_user if (count_request and user_id is not None) else 0
        global_rpm = settings.CLAUDE_GLOBAL_RPM if count_request else 0
        max_conc = settings.CLAUDE_MAX_CONCURRENT if concurrency else 0
        admission = Admission(
            token=uuid.uuid4().hex,
            spend_keys=[c[0] for c in counters],
            estimate_nano=nano(estimate_usd),
            concurrency=max_conc > 0,
        )
        keys = [
            key("claude", "rpm", "user", user_id if user_id is not None else "-", minute),
            key("claude", "rpm", "global", minute),
            key("claude", "concurrent"),
            *(breaker_keys or [key("claude", "none")] * 3),
            *admission.spend_keys,
        ]
        args: list[Any] = [
            int(time.time() * 1000),
            user_rpm,
            global_rpm,
            max_conc,
            int(settings.CLAUDE_CONCURRENCY_LEASE_SECONDS * 1000),
            admission.token,
            admission.estimate_nano,
            "1" if breaker_keys else "0",
            int(settings.CLAUDE_BREAKER_PROBE_SECONDS * 1000),
        ]
        for _key, scope, period, ttl in counters:
            limit = limits.get((scope, period))
            args += [-1 if limit is None else nano(limit), ttl]  # -1: no budget on this one
        return keys, args, admission, counters, limits

    def _refusal(
        self, raw: list[Any], counters: list, limits: dict, feature: str
    ) -> ClaudeError | None:
        code = int(raw[0])
        if code == 0:
            return None
        to_next_minute = 60 - (time.time() % 60)
        if code == 1:
            return RateLimited("per-user requests per minute exceeded", retry_after=to_next_minute)
        if code == 2:
            return RateLimited("site requests per minute exceeded", retry_after=to_next_minute)
        if code == 3:
            return ConcurrencyLimited("too many concurrent Claude calls", retry_after=2.0)
        _key, scope, period, _ttl = counters[int(raw[1]) - 1]
        limit = limits[(scope, period)]
        spent = Decimal(int(raw[2])) / NANO
        return BudgetExceeded(
            f"{scope} {period} budget ${limit} reached (spent ${spent:.4f})",
            user_message=_budget_message(scope, period, limit, feature),
        )

    def admit(
        self,
        client: redis.Redis,
        config: DoorConfig,
        *,
        user_id: int | None,
        feature: str,
        estimate_usd: Decimal | None,
        count_request: bool = True,
        concurrency: bool = True,
        breaker_keys: list[str] | None = None,
    ) -> Admission:
        keys, args, admission, counters, limits = self._prepare(
            config,
            user_id=user_id,
            feature=feature,
            estimate_usd=estimate_usd,
            count_request=count_request,
            concurrency=concurrency,
            breaker_keys=breaker_keys,
        )
        try:
            raw = _ADMIT(client, keys, args)
        except redis.RedisError:
            log.exception("limits unreadable; call goes ahead unchecked")
            return Admission(skipped=True)
        refusal = self._refusal(raw, counters, limits, feature)
        if refusal:
            raise refusal
        if int(raw[1]) >= 0:
            admission.breaker = [int(raw[1]), int(raw[2])]
        return admission

    async def aadmit(
        self,
        client: Any,
        config: DoorConfig,
        *,
        user_id: int | None,
        feature: str,
        estimate_usd: Decimal | None,
        count_request: bool = True,
        concurrency: bool = True,
        breaker_keys: list[str] | None = None,
    ) -> Admission:
        keys, args, admission, counters, limits = self._prepare(
            config,
            user_id=user_id,
            feature=feature,
            estimate_usd=estimate_usd,
            count_request=count_request,
            concurrency=concurrency,
            breaker_keys=breaker_keys,
        )
        try:
            raw = await _ADMIT.acall(client, keys, args)
        except redis.RedisError:
            log.exception("limits unreadable; call goes ahead unchecked")
            return Admission(skipped=True)
        refusal = self._refusal(raw, counters, limits, feature)
        if refusal:
            raise refusal
        if int(raw[1]) >= 0:
            admission.breaker = [int(raw[1]), int(raw[2])]
        return admission

    @staticmethod
    def _settle_args(admission: Admission, actual_usd: Decimal | None) -> tuple[list, list]:
        delta = nano(actual_usd) - admission.estimate_nano
        keys = [key("claude", "concurrent"), *(admission.spend_keys if delta else ())]
        return keys, [admission.token if admission.concurrency else "", delta]

    def settle(self, client: redis.Redis, admission: Admission, actual_usd: Decimal | None) -> None:
        """Swap the reservation for the actual cost and give the concurrency slot back."""
        if admission.settled or admission.skipped:
            return
        admission.settled = True
        try:
            _SETTLE(client, *self._settle_args(admission, actual_usd))
        except redis.RedisError:
            log.exception("spend counters not settled")

    async def asettle(self, client: Any, admission: Admission, actual_usd: Decimal | None) -> None:
        if admission.settled or admission.skipped:
            return
        admission.settled = True
        try:
            await _SETTLE.acall(client, *self._settle_args(admission, actual_usd))
        except redis.RedisError:
            log.exception("spend counters not settled")

    def charge(
        self, client: redis.Redis, *, user_id: int | None, feature: str, cost_usd: Decimal | None
    ) -> None:
        """Add a cost booked outside a live call (batch results) to the spend counters."""
        amount = nano(cost_usd)
        if not amount:
            return
        try:
            pipe = client.pipeline(transaction=False)
            for spend_key, _scope, _period, ttl in _spend_counters(
                dt.datetime.now(dt.UTC), user_id, feature
            ):
                pipe.incrby(spend_key, amount)
                pipe.expire(spend_key, ttl)
            pipe.execute()
        except redis.RedisError:
            log.exception("spend counters not charged")

    def spent(
        self, client: redis.Redis, *, scope: str, period: str, user_id: int | None = None,
        feature: str = "",
    ) -> Decimal:  # fmt: skip
        """USD on one spend counter now (admin and tests)."""
        for spend_key, s, p, _ttl in _spend_counters(dt.datetime.now(dt.UTC), user_id, feature):
            if s == scope and p == period:
                return Decimal(int(client.get(spend_key) or 0)) / NANO
        return Decimal(0)


def rebuild_spend_counters(client: redis.Redis, now: dt.datetime | None = None) -> int:
    """Set this day's and month's spend counters from the ledger (after Redis lost them).
    In-flight reservations are not in the ledger; they are dropped. Returns counters written."""
    from django.db.models import Sum

    from claudeapp.models import UsageRecord

    now = now or dt.datetime.now(dt.UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    totals: dict[str, Decimal] = {}
    for start, period in ((month_start, "month"), (day_start, "day")):
        rows = (
            UsageRecord.objects.filter(created_at__gte=start, cost_usd__isnull=False)
            .values("user_id", "feature")
            .annotate(cost=Sum("cost_usd"))
        )
        for row in rows:
            for spend_key, _scope, p, _ttl in _spend_counters(now, row["user_id"], row["feature"]):
                if p == period:
                    totals[spend_key] = totals.get(spend_key, Decimal(0)) + row["cost"]
    pipe = client.pipeline(transaction=False)
    for spend_key, amount in totals.items():
        ttl = DAY_TTL if ":day:" in spend_key else MONTH_TTL
        pipe.set(spend_key, nano(amount), ex=ttl)
    pipe.execute()
    return len(totals)
