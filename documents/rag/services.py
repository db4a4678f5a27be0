"""Writes for RAG: asking, answering (the runner a Celery task drives), stopping, cache warming.

The answer runner follows the reply protocol (`claudeapp.replies`) exactly as chat's does, from
a worker instead of the web process: the door's stream goes through a `ReplyPublisher` (Redis
snapshot, coalesced fragments to the question's group, the Stop flag), the row heartbeats, and
the final row is stored before `reply.done`. The runner runs on the process's event loop
(`documents.rag.loop`), so the task thread only waits.
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

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from claudeapp.claude import CallContext, door
from claudeapp.replies import (
    ReplyPublisher,
    ReplyStatus,
    StreamOutcome,
    error_kind_for,
    heartbeat_loop,
    publish,
    reply_request_stop,
    stream_reply,
    user_message_for,
)
from conversations.markdown import render_markdown
from documents.models import Document, DocumentSet
from documents.rag import loop, prompts, rendering
from documents.rag.citations import number_citations
from documents.rag.models import RagQuery, RagSetCache
from documents.rag.retrieval import retrieve

log = logging.getLogger(__name__)

FEATURE = "rag"
QUERY_LABEL = RagQuery._meta.label_lower  # "rag.ragquery": the ledger subject of an answer
SET_LABEL = DocumentSet._meta.label_lower  # the ledger subject of a warming call


class RagError(Exception):
    """A question that cannot be asked; `user_message` says why, in plain words."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


def rag_model_id() -> str:
    """The model RAG answers with now (the door's routing table, feature "rag")."""
    return door.model_for(FEATURE).model_id


# --- asking ----------------------------------------------------------------------------------


def ragquery_ask(
    *, document_set: DocumentSet, user: Any, question: str, enqueue: bool = True
) -> RagQuery:
    """Store the question (its answer `streaming`, not yet claimed) and queue the answer task
    once the row is committed. The strategy is picked here, by the set's size."""
    question = (question or "").strip()
    if not question:
        raise RagError("Type a question first.")
    if len(question) > settings.RAG_MAX_QUESTION_CHARS:
        raise RagError(f"Questions are limited to {settings.RAG_MAX_QUESTION_CHARS} characters.")
    size = prompts.set_size_tokens(document_set)
    if not Document.objects.filter(
        document_set=document_set, status=Document.Status.READY
    ).exists():
        raise RagError("No document of this set is ready yet: questions need some text to read.")
    now = timezone.now()
    with transaction.atomic():
        query = RagQuery.objects.create(
            document_set=document_set,
            user=user if getattr(user, "pk", None) else None,
            question=question,
            strategy=prompts.choose_strategy(size),
            set_tokens=size,
            status=ReplyStatus.STREAMING,
            started_at=now,  # queued: the sweeper fails it if no worker takes it in time
            created_at=now,
        )
        RagSetCache.objects.update_or_create(
            document_set=document_set, defaults={"last_question_at": now}
        )
        if enqueue:
            from documents.rag.tasks import answer_question

            pk = query.pk
            transaction.on_commit(lambda: answer_question.delay(pk))
    return query


async def aragquery_stop(*, query: RagQuery) -> None:
    """Stop an answer from any tab on any process: the runner sees the Redis flag between
    deltas; an answer no worker has taken yet is stopped here and now."""
    if query.status != ReplyStatus.STREAMING:
        return
    await reply_request_stop(query.reply_key)

    @database_sync_to_async
    def stop_unclaimed() -> RagQuery | None:
        taken = RagQuery.objects.filter(
            pk=query.pk, status=ReplyStatus.STREAMING, run_id__isnull=True
        ).update(status=ReplyStatus.STOPPED, finished_at=timezone.now())
        return RagQuery.objects.get(pk=query.pk) if taken else None

    stopped = await stop_unclaimed()
    if stopped is not None:
        html = await database_sync_to_async(rendering.render_answer_done)(stopped)
        await publish(
            stopped.reply_group,
            {"type": "reply.done", "reply_key": stopped.reply_key,
             "status": stopped.status, "html": html},
        )  # fmt: skip


def ragquery_stop(*, query: RagQuery) -> None:
    loop.run(aragquery_stop(query=query), timeout=15)


# --- preparing an answer -------------------------------------------------------------------


@dataclass
class Prepared:
    query: RagQuery
    run_id: uuid.UUID
    model_id: str
    prompt: prompts.Prompt
    params: dict[str, Any]
    retrieval_ms: int | None
    started: float  # monotonic, when the task took the question
    since: dt.datetime  # ledger rows of this run are newer
    texts: dict[int, str] = field(default_factory=dict)


def prompt_for_question(
    *, document_set_id: int, question: str, model_id: str, strategy: str | None = None
) -> tuple[prompts.Prompt, int | None]:
    """The documents part of a prompt for `question` (whole set or retrieved chunks) and the
    retrieval time in ms (None for whole-set). Chat can use it for a conversation bound to a
    set: `documents=prompt.documents` to the door's planner, `prompt.sources` to map citations."""
    if strategy is None:
        strategy = prompts.choose_strategy(prompts.set_size_tokens(document_set_id))
    if strategy == prompts.Strategy.WHOLE_SET:
        return prompts.whole_set_prompt(document_set_id, model_id), None
    started = time.perf_counter()
    found = retrieve(document_set_id, question)
    prompt = prompts.retrieved_prompt(document_set_id, found.chunk_ids)
    prompt.retrieval = {"stages": found.stages, "index_ms": found.index_ms,
                        "search_ms": found.search_ms}  # fmt: skip
    return prompt, int((time.perf_counter() - started) * 1000)


def _claim(query_id: int) -> uuid.UUID | None:
    """Take the question for this run; None when it is finished, or already streaming under
    another runner (a redelivered task never calls Claude twice: the sweeper decides)."""
    run_id = uuid.uuid4()
    taken = RagQuery.objects.filter(
        pk=query_id, status=ReplyStatus.STREAMING, run_id__isnull=True
    ).update(run_id=run_id, heartbeat_at=timezone.now())
    return run_id if taken else None


def _prepare(query: RagQuery, run_id: uuid.UUID, started: float) -> Prepared:
    model_id = rag_model_id()
    prompt, retrieval_ms = prompt_for_question(
        document_set_id=query.document_set_id,
        question=query.question,
        model_id=model_id,
        strategy=query.strategy,
    )
    params = prompts.request_params(
        prompt, query.question, model_id=model_id, max_tokens=settings.RAG_MAX_TOKENS
    )
    return Prepared(
        query=query,
        run_id=run_id,
        model_id=model_id,
        prompt=prompt,
        params=params,
        retrieval_ms=retrieval_ms,
        started=started,
        since=timezone.now() - dt.timedelta(seconds=1),
    )


# --- running an answer ------------------------------------------------------------------------


def ragquery_run(
    *, query_id: int, on_event: Callable[[Any], None] | None = None, timeout: float | None = None
) -> RagQuery | None:
    """Answer a stored question (the Celery task calls this; so does `manage.py ask`).

    `on_event` sees each of the door's stream events as it arrives (the command prints them).
    Returns the stored answer, or None when this run did not take the question."""
    started = time.monotonic()
    run_id = _claim(query_id)
    if run_id is None:
        log.info("rag answer %s: not taken (finished, or another runner has it)", query_id)
        return None
    query = RagQuery.objects.get(pk=query_id)
    try:
        prepared = _prepare(query, run_id, started)
    except Exception as exc:
        log.exception("rag answer %s: could not build the prompt", query_id)
        failed = _fail(query_id, run_id, "The documents could not be prepared for this question.",
                       error_kind_for(exc))  # fmt: skip
        if failed is not None:
            loop.run(_announce_done(failed), timeout=15)
        return failed
    return loop.run(_run(prepared, on_event), timeout=timeout)


async def _tee(events: AsyncIterator[Any], on_event: Callable[[Any], None]) -> AsyncIterator[Any]:
    async for event in events:
        with contextlib.suppress(Exception):
            on_event(event)
        yield event


async def _announce_done(query: RagQuery) -> None:
    html = await database_sync_to_async(rendering.render_answer_done)(query)
    await publish(
        query.reply_group,
        {"type": "reply.done", "reply_key": query.reply_key, "status": query.status, "html": html},
    )


async def _run(prepared: Prepared, on_event: Callable[[Any], None] | None) -> RagQuery:
    query = prepared.query
    ctx = CallContext(FEATURE, query.user_id, (QUERY_LABEL, query.pk))
    publisher = ReplyPublisher(
        reply_key=query.reply_key,
        group=query.reply_group,
        dom=query.reply_dom_id,
        render_markdown=render_markdown,
    )
    events = door.astream(ctx, **prepared.params)
    if on_event is not None:
        events = _tee(events, on_event)
    stream = asyncio.ensure_future(stream_reply(events, publisher, started=prepared.started))
    heartbeat = asyncio.ensure_future(
        heartbeat_loop(RagQuery, query.pk, prepared.run_id, extra=None)
    )
    try:
        await publisher.start(start_html="")
        outcome = await stream
        if outcome.drained is not None:
            # The door books a stopped or failed call when its iterator ends.
            with contextlib.suppress(Exception, asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.shield(outcome.drained)
        stored, html = await database_sync_to_async(_store)(prepared, outcome)
        await publisher.done(status=stored.status, html=html)
        return stored
    except BaseException as exc:
        stream.cancel()
        if isinstance(exc, asyncio.CancelledError):
            # The task was interrupted (time limit): keep the row honest, then let go.
            with contextlib.suppress(Exception):
                failed = await database_sync_to_async(_fail)(
                    query.pk, prepared.run_id, "The answer took too long and was stopped.",
                    "time_limit", publisher.text,
                )  # fmt: skip
                if failed is not None:
                    await asyncio.shield(publisher.done(
                        status=failed.status, html=rendering.render_answer_done(failed)
                    ))  # fmt: skip
            publisher.abandon()
            raise
        log.exception("rag answer %s crashed", query.pk)
        failed = await database_sync_to_async(_fail)(
            query.pk, prepared.run_id,
            "Something went wrong on our side while answering. Please ask again.",
            "runner_error", publisher.text,
        )  # fmt: skip
        if failed is not None:
            await publisher.done(status=failed.status, html=rendering.render_answer_done(failed))
        publisher.abandon()
        return failed or query
    finally:
        heartbeat.cancel()


def _fail(
    query_id: int, run_id: uuid.UUID, error: str, kind: str, text: str = ""
) -> RagQuery | None:
    fields: dict[str, Any] = {
        "status": ReplyStatus.FAILED,
        "error": error[:500],
        "error_kind": kind[:60],
        "finished_at": timezone.now(),
    }
    if text:
        fields["content"] = [{"type": "text", "text": text}]
        fields["html"] = render_markdown(text)
    taken = RagQuery.objects.filter(
        pk=query_id, run_id=run_id, status=ReplyStatus.STREAMING
    ).update(**fields)
    return RagQuery.objects.get(pk=query_id) if taken else None


def _block_dict(block: Any) -> dict:
    return block if isinstance(block, dict) else block.to_dict(mode="json")


def _ledger_usage(query_id: int, since: dt.datetime) -> dict[str, Any]:
    from claudeapp.models import UsageRecord

    totals = (
        UsageRecord.objects.filter(
            subject_type=QUERY_LABEL, subject_id=str(query_id), created_at__gte=since
        )
        .exclude(kind=UsageRecord.Kind.COUNT_TOKENS)
        .aggregate(
            input=Sum("input_tokens"),
            read=Sum("cache_read_tokens"),
            write5=Sum("cache_write_5m_tokens"),
            write1=Sum("cache_write_1h_tokens"),
            output=Sum("output_tokens"),
            cost=Sum("cost_usd"),
        )
    )
    return {
        "input_tokens": totals["input"] or 0,
        "cache_read_tokens": totals["read"] or 0,
        "cache_write_tokens": (totals["write5"] or 0) + (totals["write1"] or 0),
        "output_tokens": totals["output"] or 0,
        "cost_usd": totals["cost"],
    }


def _store(prepared: Prepared, outcome: StreamOutcome) -> tuple[RagQuery, str]:
    """Write the final row (verbatim blocks, numbered citations, usage from the ledger) and
    return it with its `reply.done` fragment."""
    query = prepared.query
    status = outcome.status
    if outcome.message is not None and status != ReplyStatus.FAILED:
        message = outcome.message
        blocks = [_block_dict(b) for b in message.content or []]
        model_id = getattr(message, "model", "") or prepared.model_id
        stop_reason = getattr(message, "stop_reason", "") or ""
        request_id = getattr(message, "_request_id", "") or ""
    else:
        partial = outcome.partial
        blocks = [_block_dict(b) for b in getattr(partial, "content", None) or []]
        if not any(b.get("type") == "text" and b.get("text") for b in blocks):
            blocks = [{"type": "text", "text": outcome.text}] if outcome.text else []
        model_id = getattr(partial, "model", "") or prepared.model_id
        stop_reason = ""
        request_id = getattr(outcome.error, "request_id", "") or ""
    texts: dict[int, str] = {}
    if query.strategy == RagQuery.Strategy.RETRIEVED:
        cited_documents = {s["document"] for s in prepared.prompt.sources}
        texts = dict(Document.objects.filter(pk__in=cited_documents).values_list("pk", "text"))
    passages, numbers = number_citations(blocks, prepared.prompt.sources, texts)
    html = rendering.answer_html(
        set_id=query.document_set_id, query_id=query.pk, blocks=blocks, numbers=numbers
    )
    usage = _ledger_usage(query.pk, prepared.since)
    fields: dict[str, Any] = {
        "status": status,
        "error": user_message_for(outcome.error)[:500] if status == ReplyStatus.FAILED else "",
        "error_kind": error_kind_for(outcome.error) if status == ReplyStatus.FAILED else "",
        "finished_at": timezone.now(),
        "heartbeat_at": timezone.now(),
        "content": blocks,
        "citations": passages,
        "sources": prepared.prompt.sources,
        "html": html,
        "model_id": model_id,
        "stop_reason": stop_reason,
        "request_id": request_id,
        "retrieval_ms": prepared.retrieval_ms,
        "ttft_ms": outcome.ttft_ms,
        "duration_ms": outcome.duration_ms,
        **usage,
    }
    RagQuery.objects.filter(pk=query.pk, run_id=prepared.run_id).update(**fields)
    stored = RagQuery.objects.get(pk=query.pk)
    if query.strategy == RagQuery.Strategy.WHOLE_SET and (
        usage["cache_read_tokens"] or usage["cache_write_tokens"]
    ):
        RagSetCache.objects.update_or_create(
            document_set_id=query.document_set_id,
            defaults={
                "fingerprint": prepared.prompt.fingerprint,
                "model_id": model_id,
                "prefix_tokens": usage["cache_read_tokens"] + usage["cache_write_tokens"],
                "touched_at": timezone.now(),
            },
        )
    return stored, rendering.render_answer_done(stored)


# --- cache warming ----------------------------------------------------------------------------


def ragsets_to_warm(now: dt.datetime | None = None) -> list[int]:
    """Sets whose whole-set prompt is still cached, was last used long enough ago to need a
    refresh, and which had a question recently (quiet sets are left to expire)."""
    now = now or timezone.now()
    return list(
        RagSetCache.objects.filter(
            last_question_at__gte=now - dt.timedelta(seconds=settings.RAG_WARM_ACTIVE_SECONDS),
            touched_at__lt=now - dt.timedelta(seconds=settings.RAG_WARM_AFTER_SECONDS),
            touched_at__gte=now - dt.timedelta(seconds=settings.RAG_CACHE_TTL_SECONDS),
        ).values_list("document_set_id", flat=True)
    )


def ragset_warm(*, document_set_id: int) -> str:
    """Read the set's document prompt from the cache with a one-token call, which renews its
    1h lifetime. Idempotent: a set touched recently (by a question or another warming) is
    skipped. Returns what happened: "warmed", "skipped", "cold" or "failed"."""
    now = timezone.now()
    state = RagSetCache.objects.filter(pk=document_set_id).first()
    if state is None or state.touched_at is None:
        return "skipped"
    size = prompts.set_size_tokens(document_set_id)
    if prompts.choose_strategy(size) != prompts.Strategy.WHOLE_SET:
        return "skipped"
    model_id = rag_model_id()
    prompt = prompts.whole_set_prompt(document_set_id, model_id)
    if prompt.fingerprint != state.fingerprint or not prompt.documents:
        return "cold"  # the documents or model changed: the next question writes it anew
    claimed = RagSetCache.objects.filter(
        pk=document_set_id,
        touched_at=state.touched_at,
        touched_at__lt=now - dt.timedelta(seconds=settings.RAG_WARM_AFTER_SECONDS),
    ).update(touched_at=now, warmed_at=now)
    if not claimed:
        return "skipped"
    params = prompts.request_params(prompt, prompts.WARM_QUESTION, model_id=model_id, max_tokens=1)
    ctx = CallContext(FEATURE, None, (SET_LABEL, document_set_id))
    try:
        message = door.create(ctx, **params)
    except Exception:
        log.warning("rag: warming set %s failed", document_set_id, exc_info=True)
        return "failed"
    from claudeapp.models import UsageRecord

    cost = (
        UsageRecord.objects.filter(
            subject_type=SET_LABEL, subject_id=str(document_set_id), message_id=message.id
        )
        .values_list("cost_usd", flat=True)
        .first()
    ) or Decimal(0)
    RagSetCache.objects.filter(pk=document_set_id).update(
        warm_count=F("warm_count") + 1, warm_cost_usd=F("warm_cost_usd") + cost
    )
    return "warmed" if (message.usage.cache_read_input_tokens or 0) > 0 else "cold"
