"""Message Batches through the door: submit, poll, cancel, list, and read results.

Budgets: `create` reserves the batch's pre-flight estimate (at the batch price) on the spend
counters and remembers the reservation in Redis; the first read of the results gives it back and
charges what each line actually cost, booked once per (batch_id, custom_id).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import redis as redis_lib

from claudeapp.claude import ledger
from claudeapp.claude.config import Spec, get_config
from claudeapp.claude.context import CallContext
from claudeapp.claude.errors import ClaudeError, InvalidRequest, UnsupportedParameter, classify
from claudeapp.claude.pricing import Tokens, compute_cost, usage_tokens
from claudeapp.claude.registry import Choice, choose, resolve
from claudeapp.claude.retry import policy_for
from claudeapp.claude.tokens import estimate_request_tokens
from claudeapp.redis import get_redis, key

if TYPE_CHECKING:
    from anthropic.types.messages import MessageBatch

    from claudeapp.claude.client import BatchResult, Door

log = logging.getLogger("claudeapp.claude")
RESERVE_TTL = 35 * 86400
BOOK_CHUNK = 500
SAMPLING_KEYS = ("temperature", "top_p", "top_k")


def _reserve_key(batch_id: str) -> str:
    return key("claude", "batch", batch_id, "reserve")


def _plain_call(door: Door, ctx: CallContext, kind: str) -> Any:
    from claudeapp.claude.client import _Call

    blank = Spec(model_id="")
    return _Call(
        ctx=ctx,
        kind=kind,
        base={},
        choice=Choice(requested="", spec=blank),
        spec=blank,
        policy=policy_for(ctx.feature),
        estimate_input=0,
    )


def _run(door: Door, call: Any, fn: Any, *, idempotent: bool = True) -> Any:
    """Retries without the breaker (batch endpoints are not one model's)."""
    return door._attempts(
        call,
        get_config(),
        lambda kw: fn(extra_headers=kw.get("extra_headers"), timeout=kw["timeout"]),
        idempotent=idempotent,
        breaker=False,
    )


def create(
    door: Door,
    ctx: CallContext,
    requests: list[Mapping[str, Any]],
    *,
    model: str | None,
    premium: bool,
) -> MessageBatch:
    config = get_config()
    choice = choose(config, ctx.feature, model=model, premium=premium)
    now = dt.datetime.now(dt.UTC)
    prepared = []
    estimate_usd = Decimal(0)
    estimate_input = 0
    for request in requests:
        params = dict(request["params"])
        if any(k in params for k in SAMPLING_KEYS):
            raise UnsupportedParameter("sampling parameters cannot be sent in a batch")
        spec = resolve(config, params["model"]) if params.get("model") else choice.spec
        params["model"] = spec.model_id
        tokens = estimate_request_tokens(
            messages=params.get("messages", ()), system=params.get("system"),
            tools=params.get("tools"),
        )  # fmt: skip
        estimate_input += tokens
        rates = config.prices.rates_at(spec.model_id, now)
        if rates is not None:
            estimate_usd += compute_cost(
                Tokens(input=tokens, output=int(params.get("max_tokens", 0))), rates, batch=True
            )
        prepared.append({"custom_id": str(request["custom_id"]), "params": params})

    call = _plain_call(door, ctx, "batch_create")
    call.choice, call.spec, call.estimate_input = choice, choice.spec, estimate_input
    redis = get_redis()
    try:
        admission = door.limits.admit(
            redis, config, user_id=ctx.user_id, feature=ctx.feature, estimate_usd=estimate_usd,
            concurrency=False,
        )  # fmt: skip
    except ClaudeError as error:
        ledger.save(door._refusal_entry(call, error))
        raise
    try:
        # A connection dropped after sending may hide a created batch: never resent blindly.
        batch = _run(
            door,
            call,
            lambda **kw: door._sync.messages.batches.create(requests=prepared, **kw),
            idempotent=False,
        )
    except ClaudeError as error:
        door.limits.settle(redis, admission, Decimal(0))
        ledger.save(door._error_entry(call, error))
        raise
    if not admission.skipped and admission.estimate_nano:
        try:
            redis.set(
                _reserve_key(batch.id),
                json.dumps({"estimate": admission.estimate_nano, "keys": admission.spend_keys}),
                ex=RESERVE_TTL,
            )
        except redis_lib.RedisError:
            log.exception("batch reservation not remembered", extra={"batch_id": batch.id})
    ledger.save(call.entry(outcome="ok", batch_id=batch.id, cost_usd=Decimal(0)))
    return batch


def retrieve(door: Door, batch_id: str) -> MessageBatch:
    call = _plain_call(door, CallContext("batch"), "batch")
    return _run(door, call, lambda **kw: door._sync.messages.batches.retrieve(batch_id, **kw))


def cancel(door: Door, batch_id: str) -> MessageBatch:
    call = _plain_call(door, CallContext("batch"), "batch")
    return _run(door, call, lambda **kw: door._sync.messages.batches.cancel(batch_id, **kw))


def list_page(door: Door, *, limit: int, after_id: str | None) -> list[MessageBatch]:
    call = _plain_call(door, CallContext("batch"), "batch")
    extra = {"after_id": after_id} if after_id else {}
    page = _run(
        door, call, lambda **kw: door._sync.messages.batches.list(limit=limit, **extra, **kw)
    )
    return list(page.data)


def _release_reservation(door: Door, batch_id: str) -> None:
    redis = get_redis()
    try:
        raw = redis.getdel(_reserve_key(batch_id))
        if raw is None:
            return
        reservation = json.loads(raw)
        pipe = redis.pipeline(transaction=False)
        for spend_key in reservation["keys"]:
            pipe.incrby(spend_key, -int(reservation["estimate"]))
        pipe.execute()
    except redis_lib.RedisError:
        log.exception("batch reservation not released", extra={"batch_id": batch_id})


def _entry(ctx: CallContext, batch_id: str, line: Any, when: dt.datetime) -> ledger.Entry:
    result = line.result
    kind = getattr(result, "type", "errored")
    entry = ledger.Entry(
        ctx=ctx,
        kind="batch_result",
        model_id="",
        attempts=1,
        batch_id=batch_id,
        custom_id=str(line.custom_id),
        created_at=when,
        service_tier="batch",
    )
    if kind == "succeeded":
        message = result.message
        entry.model_id = message.model
        entry.outcome = "ok"
        entry.tokens = usage_tokens(message.usage)
        entry.message_id = message.id
        entry.stop_reason = message.stop_reason or ""
    else:
        entry.outcome = kind
        error = getattr(getattr(result, "error", None), "error", None)
        entry.error_message = str(getattr(error, "message", "") or "")[:300]
    return entry


def _text_error(line: Any) -> str:
    result = line.result
    if getattr(result, "type", "") == "errored":
        error = getattr(getattr(result, "error", None), "error", None)
        return f"{getattr(error, 'type', 'error')}: {getattr(error, 'message', '')}"
    return getattr(result, "type", "")


def results(
    door: Door, ctx: CallContext, batch_id: str, *, book: bool = True
) -> Iterator[BatchResult]:
    from claudeapp.claude.client import BatchResult

    batch = retrieve(door, batch_id)
    if batch.processing_status != "ended":
        raise InvalidRequest(f"batch {batch_id} is {batch.processing_status}, not ended")
    when = batch.ended_at or dt.datetime.now(dt.UTC)
    config = get_config()
    if book:
        _release_reservation(door, batch_id)
    call = _plain_call(door, ctx, "batch_results")
    decoder = _run(door, call, lambda **kw: door._sync.messages.batches.results(batch_id, **kw))

    def flush(chunk: list[tuple[Any, ledger.Entry]]) -> Iterator[BatchResult]:
        booked: set[int] = set()
        if book:
            for _line, entry in chunk:
                if entry.model_id:
                    ledger.price(config, entry, batch=True)
            booked = {id(e) for e in ledger.book_batch_lines([e for _l, e in chunk])}
            charged = sum(
                (e.cost_usd or Decimal(0) for _l, e in chunk if id(e) in booked), Decimal(0)
            )
            door.limits.charge(
                get_redis(), user_id=ctx.user_id, feature=ctx.feature, cost_usd=charged
            )
        for line, entry in chunk:
            succeeded = entry.outcome == "ok"
            yield BatchResult(
                custom_id=entry.custom_id,
                type=line.result.type,
                message=line.result.message if succeeded else None,
                error="" if succeeded else _text_error(line),
                booked=id(entry) in booked,
            )

    chunk: list[tuple[Any, ledger.Entry]] = []
    lines = iter(decoder)
    while True:
        try:
            line = next(lines)
        except StopIteration:
            break
        except Exception as exc:  # the results download broke off
            raise classify(exc).error from exc
        chunk.append((line, _entry(ctx, batch_id, line, when)))
        if len(chunk) >= BOOK_CHUNK:
            yield from flush(chunk)
            chunk = []
    yield from flush(chunk)
