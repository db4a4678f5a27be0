"""The door: the only code that talks to the Claude API.

Every call: choose the model (routing table, registry, retired -> successor), check limits and
budgets (Redis only), then attempts with retries and the per-model circuit breaker around them,
then one ledger row with the cost. The SDK runs with `max_retries=0`; retries are ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import httpx2
from django.conf import settings

from claudeapp.claude import ledger, metrics
from claudeapp.claude.breaker import Breaker, BreakerState
from claudeapp.claude.checks import credentials_problem
from claudeapp.claude.config import DoorConfig, Spec, aget_config, get_config
from claudeapp.claude.context import CallContext
from claudeapp.claude.errors import (
    AttemptFailure,
    BreakerOpen,
    ClaudeError,
    ClaudeNotConfigured,
    StreamInterrupted,
    UnsupportedParameter,
    classify,
)
from claudeapp.claude.limits import Admission, Limits
from claudeapp.claude.planner import CachePlan, plan_prompt
from claudeapp.claude.pricing import Tokens, compute_cost, usage_tokens
from claudeapp.claude.rawstream import MessageAccumulator, aiter_events, iter_events
from claudeapp.claude.registry import Choice, choose, resolve
from claudeapp.claude.respcache import ResponseCache, request_hash
from claudeapp.claude.retry import RetryPolicy, policy_for
from claudeapp.claude.streaming import (
    Citation,
    Failed,
    Final,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolUseDelta,
)
from claudeapp.claude.structured import (
    StructuredResult,
    structured_params,
    structured_parse,
)
from claudeapp.claude.tokens import estimate_request_tokens, estimate_tokens
from claudeapp.redis import get_redis

if TYPE_CHECKING:
    from anthropic.types import Message, MessageBatch

__all__ = ["BatchResult", "Door", "get_door", "reset_door"]

log = logging.getLogger("claudeapp.claude")
DEFAULT_BASE_URL = "https://api.anthropic.com"
T = TypeVar("T")
_NO_BREAKER = BreakerState(open=False)
# Answers that prove a request was not carried out: the only ones a non-idempotent request
# (a batch submission) is sent again after. A dropped connection or a 500 may hide the effect.
NOT_PROCESSED = frozenset({429, 529})


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One line of a batch's results. `message` for `succeeded`; `error` text otherwise."""

    custom_id: str
    type: str  # succeeded | errored | canceled | expired
    message: Message | None = None
    error: str = ""
    booked: bool = False  # this read booked it in the ledger (False: booked before)


@dataclass(slots=True)
class _Call:
    ctx: CallContext
    kind: str
    base: dict[str, Any]
    choice: Choice
    spec: Spec
    policy: RetryPolicy
    estimate_input: int
    temperature: float | None = None
    effort: str | None = None
    started: float = field(default_factory=time.perf_counter)
    attempts: int = 0
    request_id: str = ""
    fell_back: bool = False
    admission: Admission | None = None
    ttft_ms: int | None = None
    breaker_state: BreakerState | None = None  # read with the admission, for attempt 1

    def take_breaker_state(self) -> BreakerState | None:
        state, self.breaker_state = self.breaker_state, None
        return state

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def entry(self, **kw: Any) -> ledger.Entry:
        fields: dict[str, Any] = {
            "ctx": self.ctx,
            "kind": self.kind,
            "model_id": self.spec.model_id,
            "requested_model_id": self.choice.requested,
            "attempts": self.attempts,
            "latency_ms": self.elapsed_ms(),
            "ttft_ms": self.ttft_ms,
            "request_id": self.request_id,
        }
        fields.update(kw)
        return ledger.Entry(**fields)


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _snapshot(stream: MessageAccumulator | None) -> Any:
    """The message a cut-short stream delivered so far (None before `message_start`)."""
    return stream.typed(partial=True) if stream is not None else None


def _translate(event: dict, stream: MessageAccumulator) -> StreamEvent | None:
    """A stream event (JSON) as one of ours (None for the events callers do not need)."""
    if event["type"] != "content_block_delta":
        return None
    delta, index = event["delta"], event["index"]
    kind = delta["type"]
    if kind == "text_delta":
        return TextDelta(delta["text"], index)
    if kind == "thinking_delta":
        return ThinkingDelta(delta["thinking"], index)
    if kind == "input_json_delta":
        block = stream.block(index)
        return ToolUseDelta(
            delta["partial_json"], index, block.get("id", ""), block.get("name", "")
        )
    if kind == "citations_delta":
        return Citation(delta["citation"], index)
    return None


def _received_tokens(partial: Any) -> int:
    """Estimated output tokens of what a cut-short stream delivered (its snapshot's blocks)."""
    total = 0
    for block in getattr(partial, "content", None) or ():
        kind = getattr(block, "type", "")
        if kind == "text":
            total += estimate_tokens(block.text)
        elif kind == "thinking":
            total += estimate_tokens(block.thinking)
        elif kind in ("tool_use", "server_tool_use"):
            total += estimate_tokens(json.dumps(block.input, separators=(",", ":")))
    return total


def _closed_with_loop(client: Any) -> AsyncIterator[None]:
    """Closes a loop's asyncio SDK client when that loop shuts down; keep what it returns.

    The aiohttp transport holds a session bound to its loop, which must be closed in that
    loop. A loop that ends the standard way (``asyncio.run``, asgiref, pytest's loop
    fixtures) first finalizes its live async generators (``loop.shutdown_asyncgens``): this
    starts one such generator, whose ``finally`` closes the client. A long-lived loop (the
    web process's, RAG's worker loop) keeps its client for its whole life."""

    async def hold() -> AsyncIterator[None]:
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    gen = hold()
    # The first step registers the generator with the running loop (its firstiter hook).
    with contextlib.suppress(StopIteration):
        gen.asend(None).send(None)
    return gen


class Door:
    """Built once per process by `get_door()`; features use `claudeapp.claude.door`."""

    def __init__(self, *, api_key: str, base_url: str) -> None:
        import anthropic

        # The SDK logs request bodies (document text) at DEBUG, e.g. with ANTHROPIC_LOG=debug:
        # never below WARNING here, whatever the environment says.
        for name in ("anthropic", "httpx2", "httpx"):
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.WARNING:
                logger.setLevel(logging.WARNING)
        self.base_url = base_url
        self._api_key = api_key
        self._timeout = httpx2.Timeout(
            settings.CLAUDE_RETRY.get("timeout", 120.0),
            connect=settings.CLAUDE_RETRY.get("connect_timeout", 5.0),
        )
        self._sync = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=self._timeout
        )
        self._async_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._async_closers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._async_redis: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self.breaker = Breaker()
        self.limits = Limits()
        self.cache = ResponseCache()

    def _aclient(self) -> Any:
        import anthropic

        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            # The SDK's aiohttp transport (its `aiohttp` extra): HTTP and chunked bodies are
            # parsed in C, where httpx's pure-Python stack (h11, anyio cancel scopes per read)
            # cost about half of a streaming reply's CPU in the web process.
            client = anthropic.AsyncAnthropic(
                api_key=self._api_key,
                base_url=self.base_url,
                max_retries=0,
                timeout=self._timeout,
                http_client=anthropic.DefaultAioHttpClient(timeout=self._timeout),
            )
            self._async_clients[loop] = client
            self._async_closers[loop] = _closed_with_loop(client)
        return client

    def _aredis(self) -> Any:
        """An asyncio Redis client for the running loop (its connections cannot cross loops;
        keyed weakly by the loop itself, so a new loop never inherits a dead one's client)."""
        from claudeapp.redis import new_async_redis

        loop = asyncio.get_running_loop()
        client = self._async_redis.get(loop)
        if client is None:
            client = new_async_redis()
            self._async_redis[loop] = client
        return client

    # --- preparing a call -----------------------------------------------------------------------

    def _prepare(
        self,
        config: DoorConfig,
        ctx: CallContext,
        kind: str,
        base: dict[str, Any],
        *,
        model: str | None,
        premium: bool,
        temperature: float | None,
        effort: str | None,
    ) -> _Call:
        choice = choose(config, ctx.feature, model=model, premium=premium)
        spec = choice.spec
        if temperature is not None and not spec.sampling_api_version:
            raise UnsupportedParameter(
                f"{spec.model_id} does not accept temperature; offer effort instead",
                user_message="This model does not take a temperature setting.",
            )
        estimate = estimate_request_tokens(
            messages=base.get("messages", ()), system=base.get("system"), tools=base.get("tools")
        )
        return _Call(
            ctx=ctx,
            kind=kind,
            base=base,
            choice=choice,
            spec=spec,
            policy=policy_for(ctx.feature),
            estimate_input=estimate,
            temperature=temperature,
            effort=effort,
        )

    def _estimate_usd(self, config: DoorConfig, call: _Call) -> Decimal | None:
        rates = config.prices.rates_at(config.canonical(call.spec.model_id), _now())
        if rates is None:
            return None
        tokens = Tokens(input=call.estimate_input, output=int(call.base.get("max_tokens", 0)))
        return compute_cost(tokens, rates)

    def _request(self, call: _Call, attempt: int) -> dict[str, Any]:
        """SDK keyword arguments for one attempt on the call's current model."""
        spec = call.spec
        kwargs = dict(call.base)
        kwargs["model"] = spec.model_id
        output_config = dict(kwargs.pop("output_config", None) or {})
        if call.effort:
            if spec.effort or not spec.known:
                output_config["effort"] = call.effort
            else:
                log.info(
                    "effort dropped: the model does not accept it",
                    extra={"event": "claude.param_dropped", "model": spec.model_id},
                )
        if output_config:
            kwargs["output_config"] = output_config
        headers: dict[str, str] = {}
        if attempt > 1:
            headers["x-retry-attempt"] = str(attempt - 1)
        if call.temperature is not None:
            if spec.sampling_api_version:
                # Sampling survives only under the older API version, for this call alone.
                kwargs["extra_body"] = {"temperature": call.temperature}
                headers["anthropic-version"] = spec.sampling_api_version
            else:  # a fallback model that does not take it
                log.info(
                    "temperature dropped on fallback model",
                    extra={"event": "claude.param_dropped", "model": spec.model_id},
                )
        if headers:
            kwargs["extra_headers"] = headers
        kwargs["timeout"] = httpx2.Timeout(call.policy.timeout, connect=call.policy.connect_timeout)
        return kwargs

    def _fall_back(self, call: _Call, config: DoorConfig, retry_after: float) -> None:
        """Switch the call to the route's fallback model, or raise BreakerOpen."""
        if not call.choice.fallback or call.fell_back:
            raise BreakerOpen(
                f"circuit open for {call.spec.model_id}", retry_after=retry_after or None
            )
        previous = call.spec.model_id
        call.spec = resolve(config, call.choice.fallback)
        call.fell_back = True
        log.warning(
            "breaker open; using the fallback model",
            extra={
                "event": "claude.fallback",
                "feature": call.ctx.feature,
                "model": previous,
                "fallback": call.spec.model_id,
            },
        )

    def _log_attempt(
        self, call: _Call, attempt: int, result: str, started: float, request_id: str | None
    ) -> None:
        """One line per failed attempt. The last attempt is in the call's own line (the
        `claude.call` event carries its attempt number and request id), so a call that works
        first time writes one line, not two."""
        metrics.ATTEMPTS.labels(call.spec.model_id, result).inc()
        if result == "ok":
            return
        log.info(
            "claude attempt",
            extra={
                "event": "claude.attempt",
                "feature": call.ctx.feature,
                "user_id": call.ctx.user_id,
                "model": call.spec.model_id,
                "attempt": attempt,
                "result": result,
                "duration_ms": int((time.perf_counter() - started) * 1000),
                "claude_request_id": request_id or "",
            },
        )

    def _after_failure(
        self,
        call: _Call,
        config: DoorConfig,
        failure: AttemptFailure,
        attempt: int,
        opened: bool,
        *,
        may_retry: bool = True,
    ) -> float:
        """Seconds to wait before the next attempt; raises the typed error when there is none."""
        delay = call.policy.delay(failure, attempt) if may_retry else None
        if delay is None:
            failure.error.attempts = attempt
            raise failure.error
        if opened:  # this failure opened the breaker: fall back at once, or fail fast
            self._fall_back(call, config, settings.CLAUDE_BREAKER_COOLDOWN_SECONDS)
            return 0.0
        return delay

    # --- the attempt loops ------------------------------------------------------------------------

    def _attempts(
        self, call: _Call, config: DoorConfig, send: Callable[[dict[str, Any]], T],
        *, idempotent: bool = True, breaker: bool = True,
    ) -> T:  # fmt: skip
        redis = get_redis()
        while True:
            state = (
                (call.take_breaker_state() or self.breaker.before(redis, call.spec.model_id))
                if breaker
                else _NO_BREAKER
            )
            if state.open:
                self._fall_back(call, config, state.retry_after)
                continue
            attempt = call.attempts = call.attempts + 1
            started = time.perf_counter()
            try:
                result = send(self._request(call, attempt))
            except Exception as exc:
                failure = classify(exc)
                call.request_id = failure.error.request_id or call.request_id
                self._log_attempt(call, attempt, _result_label(failure), started, call.request_id)
                opened = breaker and self._record_breaker(redis, call, state, failure)
                may_retry = idempotent or failure.status in NOT_PROCESSED
                delay = self._after_failure(
                    call, config, failure, attempt, opened, may_retry=may_retry
                )
                if delay:
                    time.sleep(delay)
                continue
            if breaker:
                self.breaker.success(redis, call.spec.model_id, state)
            self._log_attempt(call, attempt, "ok", started, call.request_id)
            return result

    async def _aattempts(
        self, call: _Call, config: DoorConfig,
        send: Callable[[dict[str, Any]], Awaitable[T]], *, idempotent: bool = True,
    ) -> T:  # fmt: skip
        redis = self._aredis()
        while True:
            state = call.take_breaker_state() or await self.breaker.abefore(
                redis, call.spec.model_id
            )
            if state.open:
                self._fall_back(call, config, state.retry_after)
                continue
            attempt = call.attempts = call.attempts + 1
            started = time.perf_counter()
            try:
                result = await send(self._request(call, attempt))
            except Exception as exc:
                failure = classify(exc)
                call.request_id = failure.error.request_id or call.request_id
                self._log_attempt(call, attempt, _result_label(failure), started, call.request_id)
                opened = await self._arecord_breaker(redis, call, state, failure)
                may_retry = idempotent or failure.status in NOT_PROCESSED
                delay = self._after_failure(
                    call, config, failure, attempt, opened, may_retry=may_retry
                )
                if delay:
                    await asyncio.sleep(delay)
                continue
            await self.breaker.asuccess(redis, call.spec.model_id, state)
            self._log_attempt(call, attempt, "ok", started, call.request_id)
            return result

    def _record_breaker(
        self, redis: Any, call: _Call, state: BreakerState, failure: AttemptFailure
    ) -> bool:
        if failure.server_fault:
            return self.breaker.failure(redis, call.spec.model_id, state)
        self.breaker.success(redis, call.spec.model_id, state)  # the API answered: it is up
        return False

    async def _arecord_breaker(
        self, redis: Any, call: _Call, state: BreakerState, failure: AttemptFailure
    ) -> bool:
        if failure.server_fault:
            return await self.breaker.afailure(redis, call.spec.model_id, state)
        await self.breaker.asuccess(redis, call.spec.model_id, state)
        return False

    # --- ledger helpers -------------------------------------------------------------------------

    def _ok_entry(self, config: DoorConfig, call: _Call, message: Any) -> ledger.Entry:
        usage = message.usage
        entry = call.entry(
            outcome="ok",
            tokens=usage_tokens(usage),
            service_tier=getattr(usage, "service_tier", None) or "",
            message_id=message.id,
            stop_reason=message.stop_reason or "",
            request_id=getattr(message, "_request_id", None) or call.request_id,
        )
        ledger.price(config, entry)
        return entry

    def _partial_entry(
        self, config: DoorConfig, call: _Call, partial: Any, outcome: str, error: str = ""
    ) -> ledger.Entry:
        """A stream that ended early: input from message_start (or the estimate), output from
        what arrived; flagged estimated."""
        output = _received_tokens(partial)
        if partial is not None and partial.usage is not None and partial.usage.input_tokens:
            received = usage_tokens(partial.usage)
            tokens = Tokens(
                input=received.input,
                output=max(received.output, output),
                cache_write_5m=received.cache_write_5m,
                cache_write_1h=received.cache_write_1h,
                cache_read=received.cache_read,
            )
        else:
            tokens = Tokens(input=call.estimate_input, output=output)
        entry = call.entry(
            outcome=outcome,
            tokens=tokens,
            estimated=True,
            error_message=error,
            message_id=getattr(partial, "id", "") or "",
        )
        ledger.price(config, entry)
        return entry

    def _error_entry(self, call: _Call, error: ClaudeError) -> ledger.Entry:
        return call.entry(outcome=error.kind, error_message=str(error))

    def _refusal_entry(self, call: _Call, error: ClaudeError) -> ledger.Entry:
        metrics.REFUSALS.labels(call.ctx.feature, error.kind).inc()
        entry = call.entry(outcome=error.kind, error_message=str(error))
        entry.latency_ms = None
        return entry

    # --- create ---------------------------------------------------------------------------------

    def create(
        self,
        ctx: CallContext,
        *,
        messages: Iterable[Mapping[str, Any]],
        max_tokens: int,
        model: str | None = None,
        premium: bool = False,
        system: str | Iterable[Mapping[str, Any]] | None = None,
        tools: Iterable[Mapping[str, Any]] | None = None,
        tool_choice: Mapping[str, Any] | None = None,
        thinking: Mapping[str, Any] | None = None,
        effort: str | None = None,
        temperature: float | None = None,
        output_config: Mapping[str, Any] | None = None,
        stop_sequences: list[str] | None = None,
        deterministic: bool = False,
        **params: Any,
    ) -> Message:
        """One reply (the SDK `Message`). Raises a `ClaudeError` subclass on failure."""
        base = _base(messages, max_tokens, system, tools, tool_choice, thinking, output_config,
                     stop_sequences, params)  # fmt: skip
        config = get_config()
        call = self._prepare(config, ctx, "message", base, model=model, premium=premium,
                             temperature=temperature, effort=effort)  # fmt: skip
        digest = ""
        if deterministic:
            digest = request_hash([call.spec.model_id, base, temperature, effort])
            cached = self.cache.get_reply(get_redis(), digest)
            if cached is not None:
                ledger.save(call.entry(outcome="cached", message_id=cached.id, latency_ms=0))
                return cached
        redis = get_redis()
        try:
            call.admission = self.limits.admit(
                redis, config, user_id=ctx.user_id, feature=ctx.feature,
                estimate_usd=self._estimate_usd(config, call),
                breaker_keys=self.breaker.keys(call.spec.model_id),
            )  # fmt: skip
            call.breaker_state = self.breaker.state_of(call.admission.breaker)
        except ClaudeError as error:
            ledger.save(self._refusal_entry(call, error))
            raise
        send = self._send_streamed if max_tokens > settings.CLAUDE_STREAM_ABOVE_MAX_TOKENS else None
        try:
            message = self._attempts(call, config, send or self._send)
        except ClaudeError as error:
            self.limits.settle(redis, call.admission, Decimal(0))
            ledger.save(self._error_entry(call, error))
            raise
        except BaseException:
            self.limits.settle(redis, call.admission, Decimal(0))
            raise
        entry = self._ok_entry(config, call, message)
        self.limits.settle(redis, call.admission, entry.cost_usd)
        ledger.save(entry)
        if digest and message.stop_reason:
            self.cache.put_reply(redis, digest, message)
        return message

    def _send(self, kwargs: dict[str, Any]) -> Message:
        return self._sync.messages.create(**kwargs)

    def _send_streamed(self, kwargs: dict[str, Any]) -> Message:
        # Large max_tokens: the SDK refuses a plain request that may outlast its timeout, and
        # proxies drop idle connections; a stream keeps bytes flowing.
        with self._sync.messages.stream(**kwargs) as stream:
            message = stream.get_final_message()
        if message.stop_reason is None:
            raise StreamInterrupted("stream ended before message_stop")
        return message

    async def acreate(
        self,
        ctx: CallContext,
        *,
        messages: Iterable[Mapping[str, Any]],
        max_tokens: int,
        model: str | None = None,
        premium: bool = False,
        system: str | Iterable[Mapping[str, Any]] | None = None,
        tools: Iterable[Mapping[str, Any]] | None = None,
        tool_choice: Mapping[str, Any] | None = None,
        thinking: Mapping[str, Any] | None = None,
        effort: str | None = None,
        temperature: float | None = None,
        output_config: Mapping[str, Any] | None = None,
        stop_sequences: list[str] | None = None,
        deterministic: bool = False,
        **params: Any,
    ) -> Message:
        """`create` for asyncio code."""
        base = _base(messages, max_tokens, system, tools, tool_choice, thinking, output_config,
                     stop_sequences, params)  # fmt: skip
        config = await aget_config()
        call = self._prepare(config, ctx, "message", base, model=model, premium=premium,
                             temperature=temperature, effort=effort)  # fmt: skip
        redis = self._aredis()
        digest = ""
        if deterministic:
            digest = request_hash([call.spec.model_id, base, temperature, effort])
            cached = await self.cache.aget_reply(redis, digest)
            if cached is not None:
                await ledger.asave(call.entry(outcome="cached", message_id=cached.id, latency_ms=0))
                return cached
        try:
            call.admission = await self.limits.aadmit(
                redis, config, user_id=ctx.user_id, feature=ctx.feature,
                estimate_usd=self._estimate_usd(config, call),
                breaker_keys=self.breaker.keys(call.spec.model_id),
            )  # fmt: skip
            call.breaker_state = self.breaker.state_of(call.admission.breaker)
        except ClaudeError as error:
            await ledger.asave(self._refusal_entry(call, error))
            raise
        streamed = max_tokens > settings.CLAUDE_STREAM_ABOVE_MAX_TOKENS
        try:
            message = await self._aattempts(
                call, config, self._asend_streamed if streamed else self._asend
            )
        except ClaudeError as error:
            await self.limits.asettle(redis, call.admission, Decimal(0))
            await ledger.asave(self._error_entry(call, error))
            raise
        except BaseException:
            await self.limits.asettle(redis, call.admission, Decimal(0))
            raise
        entry = self._ok_entry(config, call, message)
        await self.limits.asettle(redis, call.admission, entry.cost_usd)
        await ledger.asave(entry)
        if digest and message.stop_reason:
            await self.cache.aput_reply(redis, digest, message)
        return message

    async def _asend(self, kwargs: dict[str, Any]) -> Message:
        return await self._aclient().messages.create(**kwargs)

    async def _asend_streamed(self, kwargs: dict[str, Any]) -> Message:
        async with self._aclient().messages.stream(**kwargs) as stream:
            message = await stream.get_final_message()
        if message.stop_reason is None:
            raise StreamInterrupted("stream ended before message_stop")
        return message

    # --- stream ---------------------------------------------------------------------------------

    def stream(
        self,
        ctx: CallContext,
        *,
        messages: Iterable[Mapping[str, Any]],
        max_tokens: int,
        model: str | None = None,
        premium: bool = False,
        system: str | Iterable[Mapping[str, Any]] | None = None,
        tools: Iterable[Mapping[str, Any]] | None = None,
        tool_choice: Mapping[str, Any] | None = None,
        thinking: Mapping[str, Any] | None = None,
        effort: str | None = None,
        temperature: float | None = None,
        output_config: Mapping[str, Any] | None = None,
        stop_sequences: list[str] | None = None,
        **params: Any,
    ) -> Iterator[StreamEvent]:
        """Deltas and citations, then exactly one `Final` or `Failed`; never raises a
        `ClaudeError` (they arrive as `Failed`). Closing the iterator early (the user's Stop)
        records the call as `stopped`, with usage estimated from what arrived."""
        base = _base(messages, max_tokens, system, tools, tool_choice, thinking, output_config,
                     stop_sequences, params)  # fmt: skip
        return self._stream(ctx, base, model, premium, temperature, effort)

    def _stream(
        self, ctx: CallContext, base: dict[str, Any], model: str | None, premium: bool,
        temperature: float | None, effort: str | None,
    ) -> Iterator[StreamEvent]:  # fmt: skip
        config = get_config()
        try:
            call = self._prepare(config, ctx, "stream", base, model=model, premium=premium,
                                 temperature=temperature, effort=effort)  # fmt: skip
        except ClaudeError as error:
            yield Failed(error)
            return
        redis = get_redis()
        try:
            call.admission = self.limits.admit(
                redis, config, user_id=ctx.user_id, feature=ctx.feature,
                estimate_usd=self._estimate_usd(config, call),
                breaker_keys=self.breaker.keys(call.spec.model_id),
            )  # fmt: skip
            call.breaker_state = self.breaker.state_of(call.admission.breaker)
        except ClaudeError as error:
            ledger.save(self._refusal_entry(call, error))
            yield Failed(error)
            return

        done = False
        yielded = False
        current: Any = None
        try:
            while True:
                state = call.take_breaker_state() or self.breaker.before(redis, call.spec.model_id)
                if state.open:
                    try:
                        self._fall_back(call, config, state.retry_after)
                    except ClaudeError as error:
                        done = True
                        self._finish_failed(redis, config, call, error, None)
                        yield Failed(error)
                        return
                    continue
                attempt = call.attempts = call.attempts + 1
                started = time.perf_counter()
                current = None
                try:
                    current = MessageAccumulator()
                    with self._sync.messages.with_streaming_response.create(
                        stream=True, **self._request(call, attempt)
                    ) as response:
                        call.request_id = response.headers.get("request-id") or call.request_id
                        for event in iter_events(self._sync, response):
                            current.feed(event)
                            ours = _translate(event, current)
                            if ours is None:
                                continue
                            if call.ttft_ms is None:
                                call.ttft_ms = call.elapsed_ms()
                            yielded = True
                            yield ours
                    if not current.stopped:
                        raise StreamInterrupted("stream ended before message_stop")
                    message = current.typed()
                except Exception as exc:
                    failure = classify(exc)
                    call.request_id = failure.error.request_id or call.request_id
                    self._log_attempt(
                        call, attempt, _result_label(failure), started, call.request_id
                    )
                    opened = self._record_breaker(redis, call, state, failure)
                    try:
                        delay = self._after_failure(
                            call, config, failure, attempt, opened, may_retry=not yielded
                        )
                    except ClaudeError as error:
                        done = True
                        partial = _snapshot(current)
                        self._finish_failed(redis, config, call, error, partial)
                        yield Failed(error, partial)
                        return
                    if delay:
                        time.sleep(delay)
                    continue
                self.breaker.success(redis, call.spec.model_id, state)
                self._log_attempt(call, attempt, "ok", started, call.request_id)
                entry = self._ok_entry(config, call, message)
                self.limits.settle(redis, call.admission, entry.cost_usd)
                ledger.save(entry)
                done = True
                yield Final(message, entry)
                return
        except GeneratorExit:
            if not done:
                done = True
                entry = self._partial_entry(config, call, _snapshot(current), "stopped")
                self.limits.settle(redis, call.admission, entry.cost_usd)
                ledger.save(entry)
            raise
        finally:
            if call.admission is not None and not call.admission.settled:
                self.limits.settle(redis, call.admission, Decimal(0))

    def _finish_failed(
        self, redis: Any, config: DoorConfig, call: _Call, error: ClaudeError, partial: Any
    ) -> None:
        if partial is not None:
            entry = self._partial_entry(config, call, partial, error.kind, str(error))
        else:
            entry = self._error_entry(call, error)
        self.limits.settle(redis, call.admission, entry.cost_usd or Decimal(0))
        ledger.save(entry)

    async def _afinish_failed(
        self, redis: Any, config: DoorConfig, call: _Call, error: ClaudeError, partial: Any
    ) -> None:
        if partial is not None:
            entry = self._partial_entry(config, call, partial, error.kind, str(error))
        else:
            entry = self._error_entry(call, error)
        await self.limits.asettle(redis, call.admission, entry.cost_usd or Decimal(0))
        await ledger.asave(entry)

    def astream(
        self,
        ctx: CallContext,
        *,
        messages: Iterable[Mapping[str, Any]],
        max_tokens: int,
        model: str | None = None,
        premium: bool = False,
        system: str | Iterable[Mapping[str, Any]] | None = None,
        tools: Iterable[Mapping[str, Any]] | None = None,
        tool_choice: Mapping[str, Any] | None = None,
        thinking: Mapping[str, Any] | None = None,
        effort: str | None = None,
        temperature: float | None = None,
        output_config: Mapping[str, Any] | None = None,
        stop_sequences: list[str] | None = None,
        on_response: Callable[[], None] | None = None,
        **params: Any,
    ) -> AsyncIterator[StreamEvent]:
        """`stream` for asyncio code (`async for event in door.astream(...)`); `aclose()` it to
        stop early. `on_response` is called when a response to the request begins (its
        headers arrived, once per attempt): the caller's bookkeeping can wait for that, so a
        burst of calls puts its requests on the wire first."""
        base = _base(messages, max_tokens, system, tools, tool_choice, thinking, output_config,
                     stop_sequences, params)  # fmt: skip
        return self._astream(ctx, base, model, premium, temperature, effort, on_response)

    async def _astream(
        self, ctx: CallContext, base: dict[str, Any], model: str | None, premium: bool,
        temperature: float | None, effort: str | None,
        on_response: Callable[[], None] | None = None,
    ) -> AsyncIterator[StreamEvent]:  # fmt: skip
        config = await aget_config()
        try:
            call = self._prepare(config, ctx, "stream", base, model=model, premium=premium,
                                 temperature=temperature, effort=effort)  # fmt: skip
        except ClaudeError as error:
            yield Failed(error)
            return
        redis = self._aredis()
        try:
            call.admission = await self.limits.aadmit(
                redis, config, user_id=ctx.user_id, feature=ctx.feature,
                estimate_usd=self._estimate_usd(config, call),
                breaker_keys=self.breaker.keys(call.spec.model_id),
            )  # fmt: skip
            call.breaker_state = self.breaker.state_of(call.admission.breaker)
        except ClaudeError as error:
            await ledger.asave(self._refusal_entry(call, error))
            yield Failed(error)
            return

        done = False
        yielded = False
        current: Any = None
        try:
            while True:
                state = call.take_breaker_state() or await self.breaker.abefore(
                    redis, call.spec.model_id
                )
                if state.open:
                    try:
                        self._fall_back(call, config, state.retry_after)
                    except ClaudeError as error:
                        done = True
                        await self._afinish_failed(redis, config, call, error, None)
                        yield Failed(error)
                        return
                    continue
                attempt = call.attempts = call.attempts + 1
                started = time.perf_counter()
                current = None
                try:
                    client = self._aclient()
                    current = MessageAccumulator()
                    async with client.messages.with_streaming_response.create(
                        stream=True, **self._request(call, attempt)
                    ) as response:
                        call.request_id = response.headers.get("request-id") or call.request_id
                        if on_response is not None:
                            on_response()
                        async for event in aiter_events(client, response):
                            current.feed(event)
                            ours = _translate(event, current)
                            if ours is None:
                                continue
                            if call.ttft_ms is None:
                                call.ttft_ms = call.elapsed_ms()
                            yielded = True
                            yield ours
                    if not current.stopped:
                        raise StreamInterrupted("stream ended before message_stop")
                    message = current.typed()
                except Exception as exc:
                    failure = classify(exc)
                    call.request_id = failure.error.request_id or call.request_id
                    self._log_attempt(
                        call, attempt, _result_label(failure), started, call.request_id
                    )
                    opened = await self._arecord_breaker(redis, call, state, failure)
                    try:
                        delay = self._after_failure(
                            call, config, failure, attempt, opened, may_retry=not yielded
                        )
                    except ClaudeError as error:
                        done = True
                        partial = _snapshot(current)
                        await self._afinish_failed(redis, config, call, error, partial)
                        yield Failed(error, partial)
                        return
                    if delay:
                        await asyncio.sleep(delay)
                    continue
                await self.breaker.asuccess(redis, call.spec.model_id, state)
                self._log_attempt(call, attempt, "ok", started, call.request_id)
                entry = self._ok_entry(config, call, message)
                done = True  # booked here even if the caller goes away meanwhile
                # Both at once: the reply's end waits for one round trip, not two.
                await asyncio.gather(
                    self.limits.asettle(redis, call.admission, entry.cost_usd),
                    ledger.asave(entry),
                )
                yield Final(message, entry)
                return
        except (GeneratorExit, asyncio.CancelledError):
            if not done:
                done = True
                entry = self._partial_entry(config, call, _snapshot(current), "stopped")
                await self.limits.asettle(redis, call.admission, entry.cost_usd)
                await ledger.asave(entry)
            raise
        finally:
            if call.admission is not None and not call.admission.settled:
                await self.limits.asettle(redis, call.admission, Decimal(0))

    # --- structured output ----------------------------------------------------------------------

    def structured_params(self, schema: dict, model: str, **kw: Any) -> dict[str, Any]:
        """Params that make `model` answer in `schema` (native format or a forced tool)."""
        return structured_params(schema, resolve(get_config(), model), **kw)

    def structured_parse(self, message: Any, schema: dict) -> StructuredResult:
        return structured_parse(message, schema)

    def _structured_kwargs(
        self, config: DoorConfig, ctx: CallContext, schema: dict, kw: dict[str, Any]
    ) -> dict[str, Any]:
        choice = choose(
            config, ctx.feature, model=kw.get("model"), premium=kw.get("premium", False)
        )
        extra = structured_params(schema, choice.spec)
        suffix = extra.pop("system_suffix", None)
        if suffix:
            system = kw.get("system")
            if system is None:
                kw["system"] = suffix
            elif isinstance(system, str):
                kw["system"] = f"{system}\n\n{suffix}"
            else:
                kw["system"] = [*system, {"type": "text", "text": suffix}]
        if "output_config" in extra:
            kw["output_config"] = {**(kw.get("output_config") or {}), **extra["output_config"]}
        if "tools" in extra:
            kw["tools"] = [*(kw.get("tools") or []), *extra["tools"]]
            kw["tool_choice"] = extra["tool_choice"]
            if "thinking" in extra:
                kw["thinking"] = extra["thinking"]
        kw["model"] = choice.requested
        return kw

    def structured(self, ctx: CallContext, schema: dict, **kw: Any) -> StructuredResult:
        """A live call answered in `schema`: `StructuredResult(value | None, raw_text, error)`.
        Invalid output comes back in `error`; API failures still raise `ClaudeError`s."""
        kw = self._structured_kwargs(get_config(), ctx, schema, kw)
        return structured_parse(self.create(ctx, **kw), schema)

    async def astructured(self, ctx: CallContext, schema: dict, **kw: Any) -> StructuredResult:
        kw = self._structured_kwargs(await aget_config(), ctx, schema, kw)
        return structured_parse(await self.acreate(ctx, **kw), schema)

    # --- the registry, for features and their UI ---------------------------------------------

    def spec(self, model: str) -> Spec:
        """What `model` is sent as and accepts (alias and retirement applied): e.g. offer
        temperature only when `spec.sampling_api_version`, effort when `spec.effort`."""
        return resolve(get_config(), model)

    def model_for(self, feature: str, *, premium: bool = False) -> Spec:
        """The model a call for `feature` would use now (the routing table)."""
        return choose(get_config(), feature, premium=premium).spec

    # --- cache planning -------------------------------------------------------------------------

    def plan_prompt(self, model: str, **kw: Any) -> CachePlan:
        """`planner.plan_prompt` with `model`'s minimum cacheable length from the registry."""
        spec = resolve(get_config(), model)
        return plan_prompt(min_cacheable_tokens=spec.min_cacheable_tokens, **kw)

    # --- count_tokens ---------------------------------------------------------------------------

    def count_tokens(
        self,
        ctx: CallContext,
        *,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        system: str | Iterable[Mapping[str, Any]] | None = None,
        tools: Iterable[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> int:
        """The API's exact input token count, cached in Redis by a hash of the request."""
        config = get_config()
        base = _drop_none({"messages": list(messages), "system": system, "tools": tools, **params})
        call = self._prepare(config, ctx, "count_tokens", base, model=model, premium=False,
                             temperature=None, effort=None)  # fmt: skip
        digest = request_hash([call.spec.model_id, base])
        redis = get_redis()
        cached = self.cache.get_count(redis, digest)
        if cached is not None:
            return cached

        def send(kwargs: dict[str, Any]) -> int:
            kwargs.pop("max_tokens", None)
            return self._sync.messages.count_tokens(**kwargs).input_tokens

        try:
            tokens = self._attempts(call, config, send)
        except ClaudeError as error:
            ledger.save(self._error_entry(call, error))
            raise
        self.cache.put_count(redis, digest, tokens)
        ledger.save(call.entry(outcome="ok", cost_usd=Decimal(0)))
        return tokens

    async def acount_tokens(
        self,
        ctx: CallContext,
        *,
        messages: Iterable[Mapping[str, Any]],
        model: str | None = None,
        system: str | Iterable[Mapping[str, Any]] | None = None,
        tools: Iterable[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> int:
        config = await aget_config()
        base = _drop_none({"messages": list(messages), "system": system, "tools": tools, **params})
        call = self._prepare(config, ctx, "count_tokens", base, model=model, premium=False,
                             temperature=None, effort=None)  # fmt: skip
        digest = request_hash([call.spec.model_id, base])
        redis = self._aredis()
        cached = await self.cache.aget_count(redis, digest)
        if cached is not None:
            return cached

        async def send(kwargs: dict[str, Any]) -> int:
            kwargs.pop("max_tokens", None)
            return (await self._aclient().messages.count_tokens(**kwargs)).input_tokens

        try:
            tokens = await self._aattempts(call, config, send)
        except ClaudeError as error:
            await ledger.asave(self._error_entry(call, error))
            raise
        await self.cache.aput_count(redis, digest, tokens)
        await ledger.asave(call.entry(outcome="ok", cost_usd=Decimal(0)))
        return tokens

    # --- models ---------------------------------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        """`GET /v1/models`, every page, as dicts (extra fields kept)."""
        from claudeapp.claude.batches import _plain_call

        call = _plain_call(self, CallContext("admin"), "models")

        def send(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
            page = self._sync.models.list(
                limit=1000, extra_headers=kwargs.get("extra_headers"), timeout=kwargs["timeout"]
            )
            return [info.to_dict() for info in page]  # iterating fetches every page

        return self._attempts(call, get_config(), send, breaker=False)

    # --- batches --------------------------------------------------------------------------------

    def batch_create(
        self,
        ctx: CallContext,
        requests: Iterable[Mapping[str, Any]],
        *,
        model: str | None = None,
        premium: bool = False,
    ) -> MessageBatch:
        """Submit `[{"custom_id": ..., "params": {...}}]`. Each request's model comes from its
        params or the feature's route (retired ids mapped). Not retried once the request may
        have reached the API (a dropped answer can hide a created batch: see `batch_list`)."""
        from claudeapp.claude import batches

        return batches.create(self, ctx, list(requests), model=model, premium=premium)

    def batch_retrieve(self, batch_id: str) -> MessageBatch:
        from claudeapp.claude import batches

        return batches.retrieve(self, batch_id)

    def batch_cancel(self, batch_id: str) -> MessageBatch:
        from claudeapp.claude import batches

        return batches.cancel(self, batch_id)

    def batch_list(self, *, limit: int = 20, after_id: str | None = None) -> list[MessageBatch]:
        from claudeapp.claude import batches

        return batches.list_page(self, limit=limit, after_id=after_id)

    def batch_results(
        self, ctx: CallContext, batch_id: str, *, book: bool = True
    ) -> Iterator[BatchResult]:
        """Every result line of an ended batch. Lines are booked in the ledger at the batch
        price, once per (batch_id, custom_id) however often the results are read; `book=False`
        only reads (e.g. to recognise a batch before adopting it)."""
        from claudeapp.claude import batches

        return batches.results(self, ctx, batch_id, book=book)


def _base(
    messages: Iterable[Mapping[str, Any]],
    max_tokens: int,
    system: Any,
    tools: Any,
    tool_choice: Any,
    thinking: Any,
    output_config: Any,
    stop_sequences: Any,
    params: dict[str, Any],
) -> dict[str, Any]:
    return _drop_none(
        {
            "messages": list(messages),
            "max_tokens": max_tokens,
            "system": system,
            "tools": tools,
            "tool_choice": tool_choice,
            "thinking": thinking,
            "output_config": output_config,
            "stop_sequences": stop_sequences,
            **params,
        }
    )


def _result_label(failure: AttemptFailure) -> str:
    return str(failure.status) if failure.status is not None else failure.error.kind


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


# --- the per-process door ---------------------------------------------------------------------

_lock = threading.Lock()
_door: Door | None = None
_fingerprint: tuple[str, str] | None = None


def get_door() -> Door:
    """The process's door, built on first use (thread-safe) and rebuilt if the key or base URL
    setting changes. Raises `ClaudeNotConfigured` when neither is set."""
    global _door, _fingerprint
    fingerprint = (settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL)
    door = _door
    if door is not None and fingerprint == _fingerprint:
        return door
    with _lock:
        if _door is None or fingerprint != _fingerprint:
            problem = credentials_problem()
            if problem:
                raise ClaudeNotConfigured(problem)
            api_key, base_url = fingerprint
            # An emulator needs no real key; the SDK still wants one to send.
            _door = Door(api_key=api_key or "emulator-key", base_url=base_url or DEFAULT_BASE_URL)
            _fingerprint = fingerprint
        return _door


def reset_door() -> None:
    global _door, _fingerprint
    with _lock:
        _door, _fingerprint = None, None
