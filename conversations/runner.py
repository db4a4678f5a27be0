"""The chat reply runner: an asyncio task of the web process, owned by the server, not the socket.

Order of work (nothing but the door's Redis checks stands between the user's message and the
request to Claude):

1. start the door's stream (the request goes out);
2. once Claude answers the request (its response headers; at most ``CHAT_ANNOUNCE_WAIT_MS``
   later, at once if the call ends before any answer): announce the turn (``reply.start``: the
   user's message, the streaming placeholder, Stop) and write the rows (user message,
   assistant message ``streaming``). In a burst of messages every request is on the wire
   before this bookkeeping competes with them for the event loop;
3. stream: fragments through the publisher (first at once, then coalesced), Stop checked
   between deltas, heartbeat every few seconds;
4. once: store the final message (verbatim content blocks, usage and cost from the ledger),
   then ``reply.done`` with its rendered Markdown; release the conversation.

Closing the tab changes nothing here: the task keeps running and the reply is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from claudeapp.claude import CallContext, door
from claudeapp.replies import (
    ReplyPublisher,
    ReplyRegistry,
    ReplyStatus,
    StreamOutcome,
    error_kind_for,
    heartbeat_loop,
    parallel_db,
    reply_key_for,
    stream_reply,
    until_first,
    user_message_for,
)
from conversations import rendering, services
from conversations.markdown import RENDER_VERSION, render_markdown
from conversations.models import Conversation, Message, conversation_group, partial_blocks

log = logging.getLogger(__name__)


def _block_dict(block: Any) -> dict:
    """A content block as the API sent it (fields it left out stay out)."""
    if isinstance(block, dict):
        return block
    return block.to_dict(mode="json")


def _blocks(message: Any) -> list[dict]:
    return [_block_dict(b) for b in (getattr(message, "content", None) or [])]


async def _door_events(
    ctx: CallContext,
    params: dict[str, Any],
    refusal: Exception | None = None,
    on_response: Callable[[], None] | None = None,
) -> AsyncIterator[Any]:
    """The door's stream; a door that cannot even start (not configured) fails the reply in
    plain words like any other error, and so does a `refusal` (no call is made then). Closing
    this closes the door's stream (Stop is booked)."""
    if refusal is not None:
        raise refusal
    stream = door.astream(ctx, on_response=on_response, **params)
    try:
        async for event in stream:
            yield event
    finally:
        await stream.aclose()


@dataclass
class RunUsage:
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal | None = None

    @classmethod
    def booked(cls, entry: Any) -> RunUsage:
        tokens = entry.tokens
        return cls(
            input_tokens=tokens.input,
            cache_read_tokens=tokens.cache_read,
            cache_write_tokens=tokens.cache_write_5m + tokens.cache_write_1h,
            output_tokens=tokens.output,
            cost=entry.cost_usd,
        )


def _ledger_usage(assistant_id: uuid.UUID, since: dt.datetime) -> RunUsage:
    """This run's usage as the door booked it (one row per call; estimated when cut short)."""
    from claudeapp.models import UsageRecord

    rows = UsageRecord.objects.filter(
        subject_type=services.MESSAGE_LABEL, subject_id=str(assistant_id), created_at__gte=since
    ).exclude(kind=UsageRecord.Kind.COUNT_TOKENS)
    totals = rows.aggregate(
        input=Sum("input_tokens"),
        read=Sum("cache_read_tokens"),
        write5=Sum("cache_write_5m_tokens"),
        write1=Sum("cache_write_1h_tokens"),
        output=Sum("output_tokens"),
        cost=Sum("cost_usd"),
    )
    return RunUsage(
        input_tokens=totals["input"] or 0,
        cache_read_tokens=totals["read"] or 0,
        cache_write_tokens=(totals["write5"] or 0) + (totals["write1"] or 0),
        output_tokens=totals["output"] or 0,
        cost=totals["cost"],
    )


@dataclass
class ChatRun:
    mode: str  # send | retry | regenerate | continue
    user: Any
    state: services.ConversationState
    plan: services.RequestPlan
    assistant_id: uuid.UUID
    user_message: Message | None
    previous_assistant: Message | None
    created_at: dt.datetime
    existing: Message | None = None
    continuation: dict[str, Any] | None = None
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)
    started: float = field(default_factory=time.monotonic)

    @property
    def user_id(self) -> int:
        return self.user.pk

    @property
    def reply_key(self) -> str:
        return reply_key_for(services.MESSAGE_LABEL, self.assistant_id)

    def spawn(self) -> asyncio.Task:
        return ReplyRegistry.spawn(self.run(), name=f"chat reply {self.assistant_id}")

    # --- the placeholder --------------------------------------------------------------------------

    def _placeholder(self) -> Message:
        base = self.existing
        message = Message(
            id=self.assistant_id,
            conversation_id=self.state.id,
            role=Message.Role.ASSISTANT,
            status=ReplyStatus.STREAMING,
            run_id=self.run_id,
            started_at=timezone.now(),
            heartbeat_at=timezone.now(),
            created_at=self.created_at,
        )
        if base is not None and self.mode == "continue":
            message.content = list(base.content or [])
            message.continuations = list(base.continuations or [])
        return message

    def _start_html(self, placeholder: Message) -> str:
        html = rendering.render_new_turn(
            self.user_message, placeholder, replace=self.mode != "send"
        )
        if self.previous_assistant is not None and self.mode == "send":
            html += rendering.render_actions(self.previous_assistant, is_last=False)
        if self.mode == "send" and not self.state.title and self.user_message is not None:
            title = services.title_from(self.user_message.text)
            conv = Conversation(id=self.state.id, title=title)
            html += rendering.render_title(conv)
        history = self.plan.history
        if history.trimmed or self.state.history_start is not None:
            html += rendering.render_trim_notice(
                trimmed=history.trimmed, turns_left_out=history.turns_left_out
            )
        return html

    async def _write_rows(self, placeholder: Message) -> None:
        if self.mode == "send":
            title = None
            if not self.state.title and self.user_message is not None:
                title = services.title_from(self.user_message.text)
            await services.insert_turn(
                user_message=self.user_message, assistant=placeholder, title=title
            )
        else:
            updated = await services.reset_reply(
                assistant_id=self.assistant_id,
                run_id=self.run_id,
                keep_content=self.mode == "continue",
            )
            if not updated:
                raise LookupError("the reply was deleted")
        if self.plan.history.start != self.state.history_start and self.plan.history.trimmed:
            await services.save_history_start(self.state.id, self.plan.history.start)

    # --- the run ---------------------------------------------------------------------------------

    async def run(self) -> None:
        ctx = CallContext(
            services.FEATURE, self.user_id, (services.MESSAGE_LABEL, str(self.assistant_id))
        )
        publisher = ReplyPublisher(
            reply_key=self.reply_key,
            group=conversation_group(self.state.id),
            dom=f"m-{self.assistant_id}",
            render_markdown=render_markdown,
        )
        since = timezone.now()  # the door books this run's calls after this moment
        responded = asyncio.Event()
        stream = asyncio.ensure_future(
            stream_reply(
                _door_events(ctx, self.plan.params, self.plan.refusal, responded.set),
                publisher,
                started=self.started,
            )
        )
        # The request goes out first; the announcement and the rows follow once Claude answers
        # it, the stream ends (a refusal, an error before any answer) or CHAT_ANNOUNCE_WAIT_MS
        # pass, whichever is first: in a burst of messages every request is on the wire before
        # any of the bookkeeping competes with them for the event loop.
        request_out = asyncio.ensure_future(
            until_first(responded.wait(), stream, timeout=settings.CHAT_ANNOUNCE_WAIT_MS / 1000)
        )
        rows: asyncio.Task | None = None
        try:
            placeholder = self._placeholder()
            # A new message: a new reply key, nothing to reset. Retry, Regenerate and Continue
            # reuse theirs: the row and an earlier run's Stop flag are reset at once.
            sending = self.mode == "send"
            after = request_out if sending else None
            rows = asyncio.ensure_future(self._write_rows_then_beat(placeholder, after))
            continuing = self.mode == "continue"
            await publisher.start(
                start_html=lambda: self._start_html(placeholder),
                initial_text=placeholder.text if continuing else "",
                initial_thinking=placeholder.thinking_text if continuing else "",
                after=after,
                clear_stop=not sending,
            )
            outcome = await stream
            try:
                await rows
            except Exception:
                log.exception("chat reply %s: could not store the turn", self.assistant_id)
                await self._release()
                await publisher.done(
                    status=ReplyStatus.FAILED,
                    html=rendering.render_composer_actions(None)
                    + rendering.render_composer_error(
                        "This reply could not be saved (was the conversation deleted?)."
                    ),
                )
                return
            if outcome.drained is not None and outcome.message is None:
                # The door books a stopped or failed call when its iterator ends (a complete
                # one is booked before its Final).
                with contextlib.suppress(Exception, asyncio.CancelledError, TimeoutError):
                    async with asyncio.timeout(5):
                        await asyncio.shield(outcome.drained)
            message, total_cost = await self._store(outcome, since)
            # The conversation is free again before the page offers Send.
            await publisher.done(
                status=message.status,
                html=rendering.render_reply_done(message)
                + rendering.render_cost(self.state.id, total_cost),
                alongside=self._release(),
            )
            await services.conversation_refresh(self.user, self.state.id)
        except BaseException as exc:
            stream.cancel()
            if isinstance(exc, asyncio.CancelledError):
                publisher.abandon()
                raise
            log.exception("chat reply %s crashed", self.assistant_id)
            with contextlib.suppress(Exception):
                message = await self._fail_crashed(rows)
                html = rendering.render_composer_actions(None)
                if message is not None:
                    html = rendering.render_reply_done(message)
                else:
                    html += rendering.render_composer_error(
                        "Something went wrong on our side. Please try again."
                    )
                await self._release()
                await publisher.done(status=ReplyStatus.FAILED, html=html)
            publisher.abandon()
        finally:
            if self._heartbeat is not None:
                self._heartbeat.cancel()
            await self._release()

    _heartbeat: asyncio.Task | None = field(default=None, init=False, repr=False)
    _released: bool = field(default=False, init=False, repr=False)

    async def _release(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if not self._released:
            self._released = True
            with contextlib.suppress(Exception):
                await services.conversation_lock_release(self.state.id, self.reply_key)

    async def _write_rows_then_beat(
        self, placeholder: Message, after: asyncio.Future | None
    ) -> None:
        if after is not None:
            await after
        await self._write_rows(placeholder)

        async def refresh_lock() -> None:
            await services.conversation_lock_refresh(self.state.id, self.reply_key)

        self._heartbeat = asyncio.ensure_future(
            heartbeat_loop(Message, self.assistant_id, self.run_id, extra=refresh_lock)
        )

    async def _fail_crashed(self, rows: asyncio.Task | None) -> Message | None:
        """Mark the reply failed after a bug of ours (its row, if it was written)."""
        if rows is None:
            return None
        with contextlib.suppress(Exception):
            await rows
        if not rows.done() or rows.cancelled() or rows.exception() is not None:
            return None

        def fail() -> Message | None:
            Message.objects.filter(pk=self.assistant_id, run_id=self.run_id).update(
                status=ReplyStatus.FAILED,
                error="Something went wrong on our side while answering. Please try again.",
                error_kind="runner_error",
                finished_at=timezone.now(),
            )
            return Message.objects.filter(pk=self.assistant_id).first()

        return await parallel_db(fail)()

    # --- storing the result ----------------------------------------------------------------------

    async def _store(self, outcome: StreamOutcome, since: dt.datetime) -> tuple[Message, Decimal]:
        status = outcome.status
        final = outcome.message
        if final is not None and status != ReplyStatus.FAILED:
            blocks = _blocks(final)
            model_id = getattr(final, "model", "") or self.plan.model_id
            stop_reason = getattr(final, "stop_reason", "") or ""
            request_id = getattr(final, "_request_id", "") or ""
        else:
            partial = outcome.partial
            blocks = (
                _blocks(partial) if partial is not None and status == ReplyStatus.FAILED else []
            )
            if not blocks:
                blocks = partial_blocks(outcome.text, outcome.thinking)
            model_id = getattr(partial, "model", "") or self.plan.model_id
            stop_reason = ""
            request_id = getattr(outcome.error, "request_id", "") or ""
        error = ""
        error_kind = ""
        if status == ReplyStatus.FAILED:
            error = user_message_for(outcome.error)
            error_kind = error_kind_for(outcome.error)
        # In a worker thread with a connection of its own: replies ending together write in
        # parallel, not one by one through the process's shared database thread.
        return await parallel_db(self._write_final)(
            status=status,
            blocks=blocks,
            model_id=model_id,
            stop_reason=stop_reason,
            request_id=request_id,
            error=error,
            error_kind=error_kind,
            since=since,
            outcome=outcome,
        )

    def _write_final(
        self,
        *,
        status: str,
        blocks: list[dict],
        model_id: str,
        stop_reason: str,
        request_id: str,
        error: str,
        error_kind: str,
        since: dt.datetime,
        outcome: StreamOutcome,
    ) -> tuple[Message, Decimal]:
        # A complete call: the door's own entry says it all (no query); else what it booked.
        usage = (
            RunUsage.booked(outcome.booked)
            if outcome.booked is not None
            else _ledger_usage(self.assistant_id, since)
        )
        if self.mode == "continue":
            message = Message.objects.get(pk=self.assistant_id)
        else:
            message = self._placeholder()
        fields: dict[str, Any] = {
            "status": status,
            "error": error[:500],
            "error_kind": error_kind,
            "finished_at": timezone.now(),
            "heartbeat_at": timezone.now(),
        }
        if self.mode == "continue":
            part = {
                "mode": self.continuation["mode"],
                "content": blocks,
                "model_id": model_id,
                "status": status,
            }
            if "prompt" in self.continuation:
                part["prompt"] = self.continuation["prompt"]
            if status == ReplyStatus.FAILED:
                # The reply itself is still whole up to where it was cut: Continue again.
                fields["status"] = ReplyStatus.TRUNCATED
                fields["error"] = f"Continuing failed: {error}"[:500]
                if any(b.get("type") == "text" and b.get("text") for b in blocks):
                    part["content"] = [b for b in blocks if b.get("type") == "text"]
                    fields["continuations"] = [*message.continuations, part]
            else:
                fields["continuations"] = [*message.continuations, part]
            fields["input_tokens"] = message.input_tokens + usage.input_tokens
            fields["cache_read_tokens"] = message.cache_read_tokens + usage.cache_read_tokens
            fields["cache_write_tokens"] = message.cache_write_tokens + usage.cache_write_tokens
            fields["output_tokens"] = message.output_tokens + usage.output_tokens
            fields["cost_usd"] = (message.cost_usd or Decimal(0)) + (usage.cost or Decimal(0))
            fields["duration_ms"] = (message.duration_ms or 0) + outcome.duration_ms
            fields["tokens"] = message.tokens + usage.output_tokens
        else:
            fields.update(
                content=blocks,
                model_id=model_id,
                input_tokens=usage.input_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost,
                ttft_ms=outcome.ttft_ms,
                duration_ms=outcome.duration_ms,
                tokens=usage.output_tokens,
            )
        fields["stop_reason"] = stop_reason
        fields["request_id"] = request_id
        for name, value in fields.items():
            setattr(message, name, value)
        sources = self.plan.sources
        if sources is None and self.mode == "continue" and message.sources:
            sources = message.sources  # the earlier parts' citations keep their markers
        if sources is not None:
            message.html = self._cited(message, sources, fields)
        else:
            message.html = render_markdown(message.text)
        message.html_version = RENDER_VERSION
        fields["html"] = message.html
        fields["html_version"] = RENDER_VERSION
        cost = usage.cost or Decimal(0)
        with transaction.atomic():
            Message.objects.filter(pk=self.assistant_id, run_id=self.run_id).update(**fields)
            Conversation.objects.filter(pk=self.state.id).update(
                updated_at=timezone.now(), total_cost_usd=F("total_cost_usd") + cost
            )
        # Nothing else writes the conversation's cost while it is held for this reply.
        return message, self.state.total_cost + cost

    @staticmethod
    def _cited(message: Message, sources: list[dict], fields: dict[str, Any]) -> str:
        """A reply in a bound conversation: its citations numbered as RAG numbers them (the
        passages stored with the sources), its HTML with markers opening each passage."""
        from documents.models import Document
        from documents.rag.citations import number_citations

        blocks = message.all_blocks
        texts: dict[int, str] = {}
        chunked = {s["document"] for s in sources if s.get("chunk") is not None}
        if chunked:  # retrieved passages are narrowed to the cited text inside their chunk
            texts = dict(Document.objects.filter(pk__in=chunked).values_list("pk", "text"))
        passages, numbers = number_citations(blocks, sources, texts)
        message.sources, message.citations = sources, passages
        fields["sources"], fields["citations"] = sources, passages
        return rendering.cited_reply_html(message, numbers)
