"""The conversation socket: authenticate, subscribe, forward fragments, pass actions on.

Each open tab of a conversation has one socket in the conversation's group. Reply events reach
a socket twice when its reply runs in the same process (at once from the runner, then through
the channel layer); the second copy is dropped by its ``event_id``. The socket keeps, per
streaming reply, the ``seq`` of the last fragment it forwarded: a fragment that follows it goes
out as is; one that does not (the tab joined mid-reply) is preceded by the reply's snapshot, and
fragments the snapshot already covers are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid

from channels.generic.websocket import AsyncWebsocketConsumer

from claudeapp.dbthreads import TidyDispatch
from claudeapp.replies import (
    FragmentOrder,
    ReplyStatus,
    parallel_db,
    reply_listen,
    reply_snapshot,
    reply_unlisten,
    snapshot_fragment,
)
from conversations import rendering, services
from conversations.models import Message, conversation_group

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
MAX_FRAME = 1_000_000  # characters; the composer's limit is far below
SEEN_EVENTS = 512


def _uuid(value: object) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


@parallel_db
def _missed(
    conversation_id: object, last_id: str | None, streaming: list[str]
) -> tuple[list[Message], str | None]:
    """Messages the tab lacks (after its last one) and those it shows as streaming; and the id
    of the conversation's last message."""
    messages = Message.objects.filter(conversation_id=conversation_id)
    newest = messages.order_by("-created_at", "-id").values_list("id", flat=True).first()
    found: list[Message] = []
    if last_id:
        anchor = messages.filter(pk=last_id).values_list("created_at", flat=True).first()
        if anchor is not None:
            found = list(messages.filter(created_at__gt=anchor).order_by("created_at", "id"))
    else:
        found = list(messages.order_by("created_at", "id"))
    seen = {str(m.pk) for m in found}
    wanted = [s for s in streaming if s not in seen]
    if wanted:
        found += list(messages.filter(pk__in=wanted))
    return found, str(newest) if newest else None


class ConversationConsumer(TidyDispatch, AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        # The selector decides (and the conversation is kept at hand for the first message).
        if not await services.conversation_preload(user, conversation_id):
            # Not yours or not there: the same answer either way (no confirmation it exists).
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user = user
        self.conversation_id = conversation_id
        self.group = conversation_group(conversation_id)
        self.order = FragmentOrder(SEEN_EVENTS)
        self.forwarding = asyncio.Lock()
        self.local: asyncio.Queue[dict] = asyncio.Queue()
        self.local_task = asyncio.ensure_future(self._drain_local())
        await self.channel_layer.group_add(self.group, self.channel_name)
        await reply_listen(self.group, self.local.put_nowait)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await reply_unlisten(self.group, self.local.put_nowait)
            self.local_task.cancel()
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _drain_local(self) -> None:
        """Events from runners of this process, in the order they were published."""
        while True:
            event = await self.local.get()
            with contextlib.suppress(Exception):
                await self._forward(event)

    # --- from the browser ------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not text_data or len(text_data) > MAX_FRAME:
            await self.send(text_data=rendering.render_composer_error("That message is too long."))
            return
        try:
            data = json.loads(text_data)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        action = data.get("action") or "send"
        common = {"user": self.user, "conversation_id": self.conversation_id}
        try:
            if action == "send":
                await services.conversation_send(**common, content=data.get("content"))
            elif action == "stop":
                await services.reply_stop(**common, message_id=data.get("message"))
            elif action == "retry":
                await services.reply_retry(**common, message_id=data.get("message"))
            elif action == "regenerate":
                await services.reply_regenerate(**common, message_id=data.get("message"))
            elif action == "continue":
                await services.reply_continue(**common, message_id=data.get("message"))
            elif action == "sync":
                await self.sync(data)
        except services.ChatError as error:
            await self.send(text_data=rendering.render_composer_error(error.user_message))
        except Exception:
            log.exception("chat socket: %s failed", action)
            await self.send(
                text_data=rendering.render_composer_error(
                    "Something went wrong on our side. Please try again."
                )
            )

    async def sync(self, data: dict) -> None:
        """A tab (re)connected: send what it missed and the text so far of live replies."""
        last = _uuid(data.get("last")) if data.get("last") else None
        raw = data.get("streaming") or []
        streaming = (
            [s for s in (_uuid(v) for v in raw[:50] if v) if s] if isinstance(raw, list) else []
        )
        async with self.forwarding:
            await self._resync(last, streaming)

    async def _resync(self, last: str | None, streaming: list[str]) -> None:
        messages, newest = await _missed(self.conversation_id, last, streaming)
        appended, replaced = [], []
        for message in messages:
            is_last = str(message.pk) == newest
            snapshot = None
            if message.status == ReplyStatus.STREAMING:
                snapshot = await reply_snapshot(message.reply_key)
                if snapshot is not None:
                    self.order.seqs[message.reply_key] = snapshot.seq
            if str(message.pk) in streaming:
                if snapshot is not None and snapshot.status == ReplyStatus.STREAMING:
                    replaced.append(snapshot_fragment(snapshot))
                else:
                    replaced.append(
                        rendering.render_message(
                            message, oob="true", snapshot=snapshot, is_last=is_last
                        )
                    )
            else:
                appended.append(
                    rendering.render_message(message, snapshot=snapshot, is_last=is_last)
                )
        active = await services.conversation_active_reply(self.conversation_id)
        active_id = active.partition(":")[2] if active else None
        html = "".join(replaced)
        if appended:
            html += f'<div hx-swap-oob="beforeend:#message-list">{"".join(appended)}</div>'
        html += rendering.render_composer_actions(active_id)
        await self.send(text_data=html)

    # --- from the group ---------------------------------------------------------------------------

    async def reply_start(self, event: dict) -> None:
        await self._forward(event)

    async def reply_delta(self, event: dict) -> None:
        await self._forward(event)

    async def reply_done(self, event: dict) -> None:
        await self._forward(event)

    async def chat_html(self, event: dict) -> None:
        await self._forward(event)

    async def _forward(self, event: dict) -> None:
        async with self.forwarding:  # one event at a time, in order, each once
            if not self.order.first_time(event):
                return
            kind = event["type"]
            if kind == "reply.delta":
                html = await self.order.delta_html(event)
                if html:
                    await self.send(text_data=html)
                return
            if kind == "reply.start":
                self.order.seqs[event["reply_key"]] = event.get("seq", 0)
            elif kind == "reply.done":
                self.order.seqs.pop(event["reply_key"], None)
            if event.get("html"):
                await self.send(text_data=event["html"])
