"""The answer socket: one per streaming answer on a page. It authenticates, checks the question
through the selector (anyone else: closed as not found), subscribes to the question's group,
catches up (the text so far from the Redis snapshot, or the stored answer when it has already
ended) and forwards fragments in order; Stop is passed on to the runner, wherever it runs."""

from __future__ import annotations

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from claudeapp.dbthreads import TidyDispatch
from claudeapp.replies import (
    FragmentOrder,
    ReplyStatus,
    reply_listen,
    reply_snapshot,
    reply_unlisten,
    snapshot_fragment,
)
from documents.rag import rendering, selectors, services
from documents.rag.models import RagQuery

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
MAX_FRAME = 10_000
SEEN_EVENTS = 256


@database_sync_to_async
def _visible_query(user, query_id: int) -> RagQuery | None:  # noqa: ANN001 - a user
    return selectors.ragquery_visible_to(user).filter(pk=query_id).first()


@database_sync_to_async
def _reload(query_id: int) -> tuple[RagQuery | None, str]:
    query = RagQuery.objects.filter(pk=query_id).first()
    html = ""
    if query is not None and query.status != ReplyStatus.STREAMING:
        html = rendering.render_answer_done(query)
    return query, html


class RagAnswerConsumer(TidyDispatch, AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        query = await _visible_query(user, self.scope["url_route"]["kwargs"]["query_id"])
        if query is None:
            await self.close(code=CLOSE_NOT_FOUND)  # not yours or not there: the same answer
            return
        self.user = user
        self.query_id = query.pk
        self.key = query.reply_key
        self.group = query.reply_group
        self.order = FragmentOrder(SEEN_EVENTS)
        self.finished = False
        self.forwarding = asyncio.Lock()
        # Runners of this process (`manage.py ask` in a shell has none) hand events over
        # directly; the runner on a worker sends through the channel layer, which it does only
        # while the group has a listener on another process: say that this socket is one.
        self.local: asyncio.Queue[dict] = asyncio.Queue()
        self.local_task = asyncio.ensure_future(self._drain_local())
        # Subscribe first, then read the state: nothing published in between is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await reply_listen(self.group, self.local.put_nowait)
        await self.accept()
        async with self.forwarding:
            await self._catch_up()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await reply_unlisten(self.group, self.local.put_nowait)
            self.local_task.cancel()
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _drain_local(self) -> None:
        while True:
            event = await self.local.get()
            try:
                await self._forward(event)
            except Exception:
                log.exception("rag socket: could not forward a local event")

    async def _catch_up(self) -> None:
        query, html = await _reload(self.query_id)
        if query is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if html:
            self.finished = True
            await self.send(text_data=html)
            return
        snapshot = await reply_snapshot(self.key)
        if snapshot is not None and snapshot.status == ReplyStatus.STREAMING:
            self.order.seqs[self.key] = snapshot.seq
            await self.send(text_data=snapshot_fragment(snapshot))

    # --- from the browser ------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not text_data or len(text_data) > MAX_FRAME:
            return
        try:
            data = json.loads(text_data)
        except ValueError:
            return
        action = data.get("action") if isinstance(data, dict) else None
        if action == "stop":
            query = await _visible_query(self.user, self.query_id)
            if query is not None:
                await services.aragquery_stop(query=query)
        elif action == "sync":
            async with self.forwarding:
                self.order.seqs.pop(self.key, None)
                await self._catch_up()

    # --- from the group ------------------------------------------------------------------------

    async def reply_start(self, event: dict) -> None:
        await self._forward(event)

    async def reply_delta(self, event: dict) -> None:
        await self._forward(event)

    async def reply_done(self, event: dict) -> None:
        await self._forward(event)

    async def _forward(self, event: dict) -> None:
        async with self.forwarding:
            if not self.order.first_time(event):
                return
            kind = event["type"]
            if kind == "reply.start":
                self.order.seqs[self.key] = event.get("seq", 0)
            elif kind == "reply.delta":
                if not self.finished:
                    html = await self.order.delta_html(event)
                    if html:
                        await self.send(text_data=html)
                return
            elif kind == "reply.done":
                if self.finished:
                    return
                self.finished = True
            if event.get("html"):
                await self.send(text_data=event["html"])
