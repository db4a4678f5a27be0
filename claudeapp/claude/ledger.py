"""Writes the usage ledger: one `UsageRecord` per call, cost computed once from the API's usage.

A failed write is logged with the whole row (no content), never allowed to lose the reply the
caller paid for.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, connections, router, transaction

from claudeapp.batching import LoopBatch
from claudeapp.claude import metrics
from claudeapp.claude.config import DoorConfig
from claudeapp.claude.context import CallContext
from claudeapp.claude.pricing import Rates, Tokens, compute_cost

__all__ = ["Entry", "book_batch_lines", "price", "save", "asave"]

log = logging.getLogger("claudeapp.claude")


@dataclass(slots=True)
class Entry:
    """A ledger row before it is saved (also what the call's log line says)."""

    ctx: CallContext
    kind: str
    model_id: str
    requested_model_id: str = ""
    outcome: str = "ok"
    attempts: int = 0
    latency_ms: int | None = None
    ttft_ms: int | None = None
    tokens: Tokens = field(default_factory=Tokens)
    service_tier: str = ""
    cost_usd: Decimal | None = None
    rates: Rates | None = None
    estimated: bool = False
    request_id: str = ""
    message_id: str = ""
    stop_reason: str = ""
    error_message: str = ""
    batch_id: str = ""
    custom_id: str = ""
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def fields(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at,
            "user_id": self.ctx.user_id,
            "feature": self.ctx.feature,
            "kind": self.kind,
            "model_id": self.model_id,
            "requested_model_id": (
                self.requested_model_id if self.requested_model_id != self.model_id else ""
            ),
            "request_id": self.request_id or "",
            "message_id": self.message_id or "",
            "batch_id": self.batch_id,
            "custom_id": self.custom_id,
            "outcome": self.outcome,
            "stop_reason": self.stop_reason or "",
            "error_message": (self.error_message or "")[:300],
            "attempts": self.attempts,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "input_tokens": self.tokens.input,
            "output_tokens": self.tokens.output,
            "cache_write_5m_tokens": self.tokens.cache_write_5m,
            "cache_write_1h_tokens": self.tokens.cache_write_1h,
            "cache_read_tokens": self.tokens.cache_read,
            "thinking_tokens": self.tokens.thinking,
            "service_tier": self.service_tier or "",
            "cost_usd": self.cost_usd,
            "price_id": self.rates.price_pk if self.rates else None,
            "estimated": self.estimated,
            "subject_type": self.ctx.subject_type,
            "subject_id": self.ctx.subject_id,
        }

    def log_fields(self) -> dict[str, Any]:
        fields = {
            "event": "claude.call",
            "feature": self.ctx.feature,
            "user_id": self.ctx.user_id,
            "kind": self.kind,
            "model": self.model_id,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "input_tokens": self.tokens.input,
            "output_tokens": self.tokens.output,
            "cache_write_5m_tokens": self.tokens.cache_write_5m,
            "cache_write_1h_tokens": self.tokens.cache_write_1h,
            "cache_read_tokens": self.tokens.cache_read,
            "cost_usd": str(self.cost_usd) if self.cost_usd is not None else None,
            "estimated": self.estimated,
            "claude_request_id": self.request_id,
            "batch_id": self.batch_id or None,
        }
        return {k: v for k, v in fields.items() if v is not None}


def price(
    config: DoorConfig, entry: Entry, *, batch: bool = False, when: dt.datetime | None = None
) -> None:
    """Fill `entry.cost_usd` from the price in force at `when` (default: the entry's time)."""
    rates = config.prices.rates_at(config.canonical(entry.model_id), when or entry.created_at)
    entry.rates = rates
    entry.cost_usd = compute_cost(entry.tokens, rates, batch=batch) if rates else None
    if rates is None and (entry.tokens.input or entry.tokens.output):
        log.error(
            "no price for model; ledger row left unpriced",
            extra={"event": "claude.unpriced", "model": entry.model_id},
        )


def _observe(entry: Entry) -> None:
    labels = (entry.ctx.feature, entry.model_id)
    metrics.CALLS.labels(*labels, entry.outcome).inc()
    if entry.latency_ms is not None and entry.attempts:
        metrics.LATENCY.labels(*labels).observe(entry.latency_ms / 1000)
    if entry.ttft_ms is not None:
        metrics.TTFT.labels(*labels).observe(entry.ttft_ms / 1000)
    if entry.cost_usd:
        metrics.COST.labels(*labels).inc(float(entry.cost_usd))
    t = entry.tokens
    for kind, n in (
        ("input", t.input),
        ("output", t.output),
        ("cache_write_5m", t.cache_write_5m),
        ("cache_write_1h", t.cache_write_1h),
        ("cache_read", t.cache_read),
    ):
        if n:
            metrics.TOKENS.labels(*labels, kind).inc(n)


def _log(entry: Entry) -> None:
    level = logging.INFO if entry.outcome in ("ok", "cached") else logging.WARNING
    log.log(level, "claude call", extra=entry.log_fields())


_insert_sql: dict[tuple[str, tuple[str, ...]], tuple[str, list[Any]]] = {}


def _insert(values: dict[str, Any]) -> None:
    """INSERT one row with SQL prepared once per connection: the ORM's per-save query
    compilation was most of the ledger's cost on the hot path. Values go through each field's
    own `get_db_prep_save`, exactly as `Model.save()` would send them; no signals are sent."""
    _insert_many([values])


def _insert_many(rows: list[dict[str, Any]]) -> None:
    """`_insert` for several rows: rows with the same fields go in one `executemany`."""
    from claudeapp.models import UsageRecord

    connection = connections[router.db_for_write(UsageRecord)]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for values in rows:
        groups.setdefault(tuple(values), []).append(values)
    with connection.cursor() as cursor:
        for names, group in groups.items():
            sql, fields = _insert_statement(connection, names)
            params = [[f.get_db_prep_save(v[f.attname], connection) for f in fields] for v in group]
            if len(params) == 1:
                cursor.execute(sql, params[0])
            else:
                cursor.executemany(sql, params)


def _insert_statement(connection: Any, names: tuple[str, ...]) -> tuple[str, list[Any]]:
    from claudeapp.models import UsageRecord

    cached = _insert_sql.get((connection.alias, names))
    if cached is None:
        by_attname = {f.attname: f for f in UsageRecord._meta.concrete_fields}
        fields = [by_attname[name] for name in names]
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        table = connection.ops.quote_name(UsageRecord._meta.db_table)
        # Identifiers come from the model's own metadata, quoted; values are parameters.
        sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        cached = (sql, fields)
        _insert_sql[(connection.alias, names)] = cached
    return cached


def save(entry: Entry) -> None:
    _observe(entry)
    _log(entry)
    try:
        _insert(entry.fields())
    except Exception:
        log.exception(
            "ledger write failed", extra={**entry.log_fields(), "event": "claude.ledger_lost"}
        )


async def asave(entry: Entry) -> None:
    _observe(entry)
    _log(entry)
    try:
        await _LedgerWrites.for_loop().submit(entry.fields())
    except Exception:
        log.exception(
            "ledger write failed", extra={**entry.log_fields(), "event": "claude.ledger_lost"}
        )


class _LedgerWrites(LoopBatch[dict[str, Any]]):
    """The rows `asave` books on one event loop, inserted together
    (:class:`~claudeapp.batching.LoopBatch`).

    They go through the process's shared ORM thread (a test's or a caller's transaction sees
    them), one hop at a time: 200 replies ending within a second queued 100 hops there per
    process, each its own round trip. Rows booked during one pass of the loop go in one hop
    (one `executemany`). If a batch fails, its rows are inserted one by one, so one bad row
    loses no other.
    """

    async def send(self, items: list[dict[str, Any]]) -> list[Exception | None]:
        return await sync_to_async(_insert_batch, thread_sensitive=True)(items)


def _insert_batch(rows: list[dict[str, Any]]) -> list[Exception | None]:
    """Insert `rows` (on the shared ORM thread): all together, else each alone."""
    from claudeapp.models import UsageRecord

    if len(rows) == 1:
        try:
            _insert(rows[0])
            return [None]
        except Exception as error:
            return [error]
    using = router.db_for_write(UsageRecord)
    try:
        with transaction.atomic(using=using):  # all or none: no row is inserted twice
            _insert_many(rows)
        return [None] * len(rows)
    except Exception:
        log.warning("ledger: a batch of %d rows failed, inserting them one by one", len(rows))
    results: list[Exception | None] = []
    for values in rows:
        try:
            with transaction.atomic(using=using):
                _insert(values)
            results.append(None)
        except Exception as error:
            results.append(error)
    return results


def book_batch_lines(entries: list[Entry]) -> list[Entry]:
    """Book batch result lines once per (batch_id, custom_id); returns the entries newly booked.

    Lines already in the ledger are skipped, so reading results twice (a retried task, a second
    reader) books nothing twice; the unique constraint settles a race between two readers.
    """
    from claudeapp.models import UsageRecord

    if not entries:
        return []
    batch_ids = {e.batch_id for e in entries}
    existing = set(
        UsageRecord.objects.filter(
            batch_id__in=batch_ids, custom_id__in=[e.custom_id for e in entries]
        ).values_list("batch_id", "custom_id")
    )
    fresh = [e for e in entries if (e.batch_id, e.custom_id) not in existing]
    if not fresh:
        return []
    try:
        with transaction.atomic():
            UsageRecord.objects.bulk_create([UsageRecord(**e.fields()) for e in fresh])
        booked = fresh
    except IntegrityError:
        booked = []
        for entry in fresh:  # another reader got some of them first: one row at a time
            try:
                with transaction.atomic():
                    UsageRecord.objects.create(**entry.fields())
                booked.append(entry)
            except IntegrityError:
                continue
    for entry in booked:
        _observe(entry)
    return booked
