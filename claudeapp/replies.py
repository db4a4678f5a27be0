"""The reply protocol shared by chat and RAG (ARCHITECTURE.md, "One reply protocol").

A reply is a row of a model built on :class:`Reply`. It names its ``reply_key``
(``"app_label.model:pk"``), the channel-layer group its page listens to (``reply_group``) and
the DOM id its page shows it under (``reply_dom_id``). Its runner reads the door's stream events
with :func:`stream_reply`, which feeds a :class:`ReplyPublisher`; the publisher

- keeps the text so far in Redis under the reply key (a snapshot with its ``seq``), so a socket
  that joins mid-reply shows the text so far and then newer deltas (a socket of the runner's
  own process reads it from the publisher's memory: the Redis copy is written after the
  fragment went out, the writes of every reply on the event loop in one pipeline,
  :class:`SnapshotWrites`);
- publishes ``reply.start``, then ``reply.delta {reply_key, seq, html}`` (the first at once,
  then coalesced every ``REPLY_COALESCE_MS``), then, once the runner has stored the final row,
  ``reply.done {reply_key, status, html}``;
- sees the Stop flag ``stop:<reply_key>`` (set from any tab on any web process with
  :func:`reply_request_stop`) between deltas.

Delivery: sockets of the runner's own process get every event at once (:class:`LocalGroups`);
the channel layer carries start and done always, and deltas unless every socket registered for
the group (``listeners:<group>`` in Redis, kept by :func:`reply_listen`) is on the runner's own
process. Events carry an
``event_id``: a socket that receives one twice forwards it once. A socket that sees a gap in
``seq`` (it joined late) sends the snapshot first (:func:`snapshot_fragment`).

Sockets: join the channel-layer group, then :func:`reply_listen`; forward events by
``event_id`` and ``seq``; pass Stop on. The runner heartbeats (:func:`heartbeat_loop`); the beat
task :func:`sweep_stale_replies` marks ``streaming`` rows of every model on the base whose
heartbeat went quiet ``failed``, keeping the snapshot's text, and announces it.

Streaming HTML: a streaming reply's body has three parts, each an element with an id derived
from ``reply_dom_id``: ``-thinking`` (thinking text, plain), ``-blocks`` (Markdown already
rendered: the text up to the last finished paragraph) and ``-tail`` (the paragraph being
written, as escaped plain text). Fragments are htmx out-of-band swaps, so a page needs no
script of its own to follow a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import html as html_lib
import itertools
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer
from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from redis.exceptions import NoScriptError

from claudeapp.batching import LoopBatch
from claudeapp.dbthreads import parallel_db
from claudeapp.redis import get_async_redis, get_redis, key

log = logging.getLogger(__name__)

__all__ = [
    "FINISHED",
    "FragmentOrder",
    "PROCESS_ID",
    "LocalGroups",
    "MarkdownSplitter",
    "Reply",
    "ReplyPublisher",
    "ReplyRegistry",
    "ReplyStatus",
    "Snapshot",
    "StreamOutcome",
    "delta_fragment",
    "error_kind_for",
    "heartbeat_loop",
    "parallel_db",
    "publish",
    "reply_key_for",
    "reply_listen",
    "reply_model_for_key",
    "reply_request_stop",
    "reply_request_stop_sync",
    "reply_snapshot",
    "reply_snapshot_sync",
    "reply_unlisten",
    "snapshot_fragment",
    "stream_reply",
    "sweep_stale_replies",
    "user_message_for",
]


class ReplyStatus(models.TextChoices):
    STREAMING = "streaming", "streaming"
    COMPLETE = "complete", "complete"
    STOPPED = "stopped", "stopped"
    FAILED = "failed", "failed"
    TRUNCATED = "truncated", "truncated"
    REFUSED = "refused", "refused"


FINISHED = frozenset(s.value for s in ReplyStatus if s != ReplyStatus.STREAMING)


class Reply(models.Model):
    """The abstract base of every streamed reply (chat's assistant message, RAG's answer).

    A subclass provides ``reply_group`` (the channel-layer group its page listens to),
    ``reply_dom_id`` (the element id its page shows it under) and may override
    :meth:`reply_partial_fields` and :meth:`reply_done_html` so the sweeper can finish it.
    """

    Status = ReplyStatus

    status = models.CharField(
        max_length=12, choices=ReplyStatus.choices, default=ReplyStatus.STREAMING
    )
    error = models.CharField(
        max_length=500, blank=True, help_text="What went wrong, in plain words."
    )
    error_kind = models.CharField(max_length=60, blank=True, help_text="The error's kind, for ops.")
    run_id = models.UUIDField(
        null=True, blank=True, editable=False, help_text="The runner that owns the reply now."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        indexes = [
            models.Index(
                fields=["heartbeat_at"],
                condition=Q(status="streaming"),
                name="%(app_label)s_%(class)s_live",
            )
        ]

    @property
    def reply_key(self) -> str:
        return reply_key_for(self._meta.label_lower, self.pk)

    @property
    def reply_group(self) -> str:  # pragma: no cover - every subclass names its group
        raise NotImplementedError

    @property
    def reply_dom_id(self) -> str:
        return f"reply-{self.pk}"

    @property
    def is_streaming(self) -> bool:
        return self.status == ReplyStatus.STREAMING

    def reply_partial_fields(self, snapshot: Snapshot | None) -> dict[str, Any]:
        """Fields that keep the text a dead runner left in Redis; the sweeper writes them in
        the same update that marks the reply failed."""
        return {}

    def reply_done_html(self) -> str:
        """The fragment that replaces the reply on its page once it has ended."""
        return ""

    def reply_after_sweep(self) -> None:
        """Release whatever the dead runner held (locks); called after the row is saved."""


def reply_key_for(label_lower: str, pk: object) -> str:
    return f"{label_lower}:{pk}"


def reply_model_for_key(reply_key: str) -> tuple[type[Reply], str]:
    """The model and primary key a reply key names; ``LookupError``/``ValueError`` if none."""
    label, _, pk = reply_key.partition(":")
    model = apps.get_model(label)
    if not issubclass(model, Reply) or not pk:
        raise LookupError(reply_key)
    return model, pk


def reply_models() -> list[type[Reply]]:
    """Every concrete model on the base (what the sweeper scans)."""
    return [m for m in apps.get_models() if issubclass(m, Reply)]


# --- Redis: snapshot and stop flag ----------------------------------------------------------------


def snapshot_key(reply_key: str) -> str:
    return key("reply", reply_key)


def stop_key(reply_key: str) -> str:
    return key("stop", reply_key)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a reply has said so far, as its runner last published it."""

    seq: int
    status: str
    dom: str
    text: str
    committed: int  # characters of `text` already rendered into `blocks`
    blocks: str  # rendered, sanitized HTML of text[:committed]
    thinking: str

    @property
    def tail(self) -> str:
        return self.text[self.committed :]

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> Snapshot | None:
        if not raw:
            return None

        def get(name: str) -> str:
            return raw.get(name.encode(), b"").decode("utf-8", "replace")

        return cls(
            seq=int(get("seq") or 0),
            status=get("status") or ReplyStatus.STREAMING,
            dom=get("dom"),
            text=get("text"),
            committed=int(get("committed") or 0),
            blocks=get("blocks"),
            thinking=get("thinking"),
        )


# One script per snapshot write (a fragment, or the fragments made while the reply's previous
# write was in flight): append to the snapshot, read the Stop flag, and say whether a socket on
# another process listens to the reply's group (else the channel layer is skipped).
_UPDATE_SNAPSHOT = """
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'committed', ARGV[5])
if #ARGV[2] > 0 then
  redis.call('HSET', KEYS[1], 'text', (redis.call('HGET', KEYS[1], 'text') or '') .. ARGV[2])
end
if #ARGV[3] > 0 then
  local thinking = redis.call('HGET', KEYS[1], 'thinking') or ''
  redis.call('HSET', KEYS[1], 'thinking', thinking .. ARGV[3])
end
if #ARGV[4] > 0 then
  redis.call('HSET', KEYS[1], 'blocks', (redis.call('HGET', KEYS[1], 'blocks') or '') .. ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
-- The Stop flag, and the group's listeners (`remote_listeners` decides on the layer).
return {redis.call('EXISTS', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""


class SnapshotWrites(LoopBatch[tuple[list[str], list]]):
    """The fragments' snapshot scripts of every reply on one event loop, sent to Redis together
    (:class:`~claudeapp.batching.LoopBatch`): one pipeline per pass of the loop.

    Each fragment's script was one round trip; a web process streaming a hundred replies made
    a thousand a second, and the round trips (a write and a read on the socket each, and the
    client's per-call work) were a third of its event loop's time. A reply's own writes stay
    in order: its publisher awaits each before the next.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.redis = get_async_redis()
        self.script = self.redis.register_script(_UPDATE_SNAPSHOT)

    def run(self, keys: list[str], args: list) -> asyncio.Future:
        """The script's result for one fragment: (stop flag, the group's listeners)."""
        return self.submit((keys, args))

    async def send(self, items: list[tuple[list[str], list]]) -> list[Any]:
        if len(items) == 1:
            keys, args = items[0]
            return [await self.script(keys=keys, args=args)]
        sha = self.script.sha
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in items:
                pipe.evalsha(sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        for i, result in enumerate(results):
            if isinstance(result, NoScriptError):  # Redis restarted: load it again
                keys, args = items[i]
                results[i] = await self.script(keys=keys, args=args)
        return results


async def reply_snapshot(reply_key: str) -> Snapshot | None:
    """What the reply has said so far: from its publisher when it runs in this process (exact:
    the Redis copy is written after this process's sockets got the fragment), else Redis."""
    publisher = _local_publishers.get(reply_key)
    if publisher is not None and publisher.started:
        return publisher.snapshot()
    return Snapshot.from_redis(await get_async_redis().hgetall(snapshot_key(reply_key)))


def reply_snapshot_sync(reply_key: str) -> Snapshot | None:
    return Snapshot.from_redis(get_redis().hgetall(snapshot_key(reply_key)))


# Publishers of this process, by reply key: a Stop from a socket on this process reaches its
# runner at once (from another process it arrives through the Redis flag), and a socket of
# this process that joins mid-reply reads the text so far from memory.
_local_publishers: dict[str, ReplyPublisher] = {}


async def reply_request_stop(reply_key: str) -> None:
    """Ask the reply's runner, wherever it runs, to stop (it keeps the partial text)."""
    await get_async_redis().set(stop_key(reply_key), "1", ex=settings.REPLY_SNAPSHOT_TTL)
    publisher = _local_publishers.get(reply_key)
    if publisher is not None:
        publisher.stop_requested.set()


def reply_request_stop_sync(reply_key: str) -> None:
    get_redis().set(stop_key(reply_key), "1", ex=settings.REPLY_SNAPSHOT_TTL)


# --- HTML fragments ------------------------------------------------------------------------------


def _escape(text: str) -> str:
    return html_lib.escape(text, quote=False)


def delta_fragment(
    dom: str,
    *,
    text: str = "",
    blocks: str = "",
    tail: str | None = None,
    thinking: str = "",
) -> str:
    """An out-of-band fragment that appends to a streaming reply.

    ``blocks``: newly rendered Markdown to append; ``tail``: when given, replaces the plain
    tail (a paragraph was just rendered); otherwise ``text`` is appended to the tail.
    """
    parts = []
    if thinking:
        parts.append(
            f'<span id="{dom}-thinking" hx-swap-oob="beforeend">{_escape(thinking)}</span>'
        )
    if blocks:
        parts.append(f'<div id="{dom}-blocks" hx-swap-oob="beforeend">{blocks}</div>')
    if tail is not None:
        parts.append(f'<span id="{dom}-tail" hx-swap-oob="innerHTML">{_escape(tail)}</span>')
    elif text:
        parts.append(f'<span id="{dom}-tail" hx-swap-oob="beforeend">{_escape(text)}</span>')
    return "".join(parts)


def snapshot_fragment(snapshot: Snapshot) -> str:
    """Replaces a streaming reply's body with everything said so far (late joiners)."""
    dom = snapshot.dom
    return (
        f'<span id="{dom}-thinking" hx-swap-oob="innerHTML">{_escape(snapshot.thinking)}</span>'
        f'<div id="{dom}-blocks" hx-swap-oob="innerHTML">{snapshot.blocks}</div>'
        f'<span id="{dom}-tail" hx-swap-oob="innerHTML">{_escape(snapshot.tail)}</span>'
    )


class FragmentOrder:
    """What one socket has forwarded: each event once (by ``event_id``, which the local hand-off
    and the channel layer may both deliver), and each reply's deltas in ``seq`` order. A delta
    that does not follow the last one sent (the socket joined mid-reply, or one went missing)
    is sent as the snapshot so far, plus the delta when the snapshot does not hold it yet."""

    def __init__(self, remember: int = 512) -> None:
        self.seqs: dict[str, int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def first_time(self, event: dict) -> bool:
        event_id = event.get("event_id")
        if not event_id:
            return True
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return True

    async def delta_html(self, event: dict) -> str | None:
        """The HTML to send for a ``reply.delta`` (None: the socket has sent it already)."""
        key, seq = event["reply_key"], event["seq"]
        last = self.seqs.get(key)
        if last is not None:
            if seq == last + 1:
                self.seqs[key] = seq
                return event["html"]
            if seq <= last:
                return None  # the snapshot this socket sent already holds it
        snapshot = await reply_snapshot(key)
        if snapshot is None:
            self.seqs[key] = seq
            return event["html"]
        html = snapshot_fragment(snapshot)
        if snapshot.seq < seq:
            html += event["html"]
        self.seqs[key] = max(seq, snapshot.seq)
        return html


class MarkdownSplitter:
    """Finds where streamed Markdown may be rendered: up to the last finished paragraph.

    A paragraph is finished at a blank line outside a code fence, once the next paragraph has
    begun at the left margin (an indented line may still belong to a list item above).
    """

    def __init__(self, committed: int = 0) -> None:
        self.committed = committed

    def advance(self, text: str) -> int:
        """The new commit point in ``text`` (all text so far); never moves backwards."""
        start = self.committed
        best = start
        in_fence = False
        fence = ""
        pos = start
        length = len(text)
        while pos < length:
            end = text.find("\n", pos)
            if end < 0:
                break  # the last line is still being written
            line = text[pos:end]
            stripped = line.lstrip(" ")
            if stripped.startswith(("```", "~~~")) and len(line) - len(stripped) < 4:
                marker = stripped[:3]
                if not in_fence:
                    in_fence, fence = True, marker
                elif marker == fence and not stripped[3:].strip():
                    in_fence = False
            elif not in_fence and not line.strip():
                # A blank line: commit before it once the next paragraph starts unindented.
                nxt = end + 1
                while nxt < length and text[nxt] == "\n":
                    nxt += 1
                if nxt < length and not text[nxt].isspace():
                    best = nxt
            pos = end + 1
        self.committed = best
        return best


# --- this process's sockets, by group ------------------------------------------------------------


class LocalGroups:
    """Sockets of this process by group, so a fragment reaches them without a trip through
    Redis. Every socket also joins the channel-layer group and says in Redis which process it
    is on (``listeners:<group>``): a runner skips the channel layer for a run's events (start,
    fragments, end) only while every registered socket of the group is on its own process,
    checked in the same Redis round trip as the snapshot write each of them makes anyway.
    Other events always go through it. Each event has an ``event_id``; a socket drops a copy
    it already has."""

    _members: ClassVar[dict[str, set[Callable[[dict], None]]]] = {}

    @classmethod
    def add(cls, group: str, deliver: Callable[[dict], None]) -> None:
        cls._members.setdefault(group, set()).add(deliver)

    @classmethod
    def discard(cls, group: str, deliver: Callable[[dict], None]) -> None:
        members = cls._members.get(group)
        if members is not None:
            members.discard(deliver)
            if not members:
                cls._members.pop(group, None)

    @classmethod
    def deliver(cls, group: str, event: dict) -> None:
        for deliver in list(cls._members.get(group, ())):
            try:
                deliver(event)
            except Exception:
                log.exception("local delivery to a socket failed")


# This process, as the `listeners:<group>` hashes name it.
PROCESS_ID = uuid.uuid4().hex
_event_numbers = itertools.count(1)


def new_event_id() -> str:
    """Unique across processes (this process's id and a counter), without a uuid4 per event."""
    return f"{PROCESS_ID}.{next(_event_numbers)}"


def listeners_key(group: str) -> str:
    return key("listeners", group)


async def reply_listen(group: str, deliver: Callable[[dict], None]) -> None:
    """A socket of this process listens to ``group`` (call after joining the layer's group)."""
    LocalGroups.add(group, deliver)
    async with get_async_redis().pipeline(transaction=False) as pipe:
        pipe.hincrby(listeners_key(group), PROCESS_ID, 1)
        pipe.expire(listeners_key(group), 86400)
        await pipe.execute()


async def reply_unlisten(group: str, deliver: Callable[[dict], None]) -> None:
    LocalGroups.discard(group, deliver)
    try:
        await get_async_redis().hincrby(listeners_key(group), PROCESS_ID, -1)
    except Exception:
        # A count left too high only sends fragments through the layer that nobody reads.
        log.warning("could not unregister a listener of %s", group)


def remote_listeners(listeners: dict[bytes, bytes] | list[bytes]) -> bool:
    """Whether a group's sockets (its ``listeners:<group>`` hash, as a dict or as HGETALL's
    flat list inside a script's reply) may be on another process: the channel layer is
    skipped only while every registered socket is on this one (none registered means "send
    it": a socket may be joining)."""
    pairs = (
        listeners.items()
        if isinstance(listeners, dict)
        else zip(listeners[::2], listeners[1::2], strict=True)
    )
    mine = others = 0
    for process, count in pairs:
        n = int(count or 0)
        if n > 0:
            if (process.decode() if isinstance(process, bytes) else process) == PROCESS_ID:
                mine += n
            else:
                others += n
    return not (mine > 0 and others == 0)


async def publish(
    group: str, event: dict, *, channel_layer: Any = None, layer: bool = True
) -> None:
    """Send a reply event to every socket of ``group``: this process's at once, then all of
    them through the channel layer (duplicates are dropped by ``event_id``); ``layer=False``
    when no socket of the group is on another process (`remote_listeners`)."""
    if "event_id" not in event:
        event["event_id"] = new_event_id()
    LocalGroups.deliver(group, event)
    if layer:
        await (channel_layer or get_channel_layer()).group_send(group, event)


async def until_first(*waits: Awaitable[Any], timeout: float | None = None) -> None:
    """Until the first of ``waits`` is done, or ``timeout`` seconds. Coroutines given here are
    cancelled afterwards; futures and tasks (shared with others) are left alone."""
    futures = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future, given in zip(futures, waits, strict=True):
            if future is not given:
                future.cancel()


# --- the publisher -------------------------------------------------------------------------------


class ReplyPublisher:
    """Publishes one run of a reply: snapshot in Redis, coalesced fragments to the group."""

    def __init__(
        self,
        *,
        reply_key: str,
        group: str,
        dom: str,
        render_markdown: Callable[[str], str],
        interval: float | None = None,
        channel_layer: Any = None,
    ) -> None:
        self.reply_key = reply_key
        self.group = group
        self.dom = dom
        self.render_markdown = render_markdown
        self.interval = (
            settings.REPLY_COALESCE_MS / 1000 if interval is None else max(0.0, interval)
        )
        self.stop_poll = settings.REPLY_STOP_POLL_MS / 1000
        self.ttl = settings.REPLY_SNAPSHOT_TTL
        self.layer = channel_layer or get_channel_layer()
        self.redis = get_async_redis()
        self.seq = 0
        self.text = ""
        self.thinking = ""
        self.frames = 0
        self.initial_text_len = 0
        self.initial_thinking_len = 0
        self.first_fragment_at: float | None = None
        self._splitter = MarkdownSplitter()
        self._text: list[str] = []
        self._thinking: list[str] = []
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._io: asyncio.Future | None = None  # the fragments' snapshot writes and forwarding
        self._unstored: list[tuple[str, str, str, int, dict]] = []
        self._blocks: list[str] = []  # the rendered Markdown published so far, in pieces
        self.started = False  # the run is announced
        self._keys = [snapshot_key(reply_key), stop_key(reply_key), listeners_key(group)]
        self.remote_listeners = True  # until the first fragment's round trip says otherwise

    # -- feeding -------------------------------------------------------------------------------

    def add_text(self, chunk: str) -> None:
        if chunk:
            self._text.append(chunk)
            self._wake.set()

    def add_thinking(self, chunk: str) -> None:
        if chunk:
            self._thinking.append(chunk)
            self._wake.set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(
        self,
        *,
        start_html: str | Callable[[], str] = "",
        initial_text: str = "",
        initial_thinking: str = "",
        after: Awaitable[Any] | None = None,
        clear_stop: bool = True,
    ) -> None:
        """Reset the snapshot, announce the run (``reply.start``) and begin publishing; with
        ``after``, all of it once that has finished (``start_html`` may then be a function,
        called at that moment). Text added meanwhile is kept and published after the start.
        ``clear_stop=False``: the reply key is new, no earlier run left a Stop flag (one set
        before the announcement is then kept, not wiped)."""
        if initial_text:
            self.text = initial_text
            self._splitter = MarkdownSplitter()
            self._splitter.advance(initial_text)
        self.thinking = initial_thinking
        self.initial_text_len = len(initial_text)
        self.initial_thinking_len = len(initial_thinking)
        committed = self._splitter.committed
        blocks = self.render_markdown(self.text[:committed]) if committed else ""
        self._task = asyncio.create_task(
            self._run(start_html=start_html, blocks=blocks, after=after, clear_stop=clear_stop),
            name=f"publisher {self.reply_key}",
        )
        _local_publishers[self.reply_key] = self

    def _init(self, *, start_html: str, blocks: str, clear_stop: bool) -> None:
        """Announce the run (``reply.start``) to this process's sockets at once; reset the
        snapshot in Redis and announce it through the layer (when a socket of the group may
        be on another process) in the background, ahead of every fragment's write: the first
        fragment waits for no round trip."""
        self._blocks = [blocks]
        self.started = True
        event = {
            "type": "reply.start",
            "reply_key": self.reply_key,
            "seq": 0,
            "html": start_html,
            "event_id": new_event_id(),
        }
        snapshot = {
            "seq": 0,
            "status": ReplyStatus.STREAMING,
            "dom": self.dom,
            "text": self.text,
            "committed": self._splitter.committed,
            "blocks": blocks,
            "thinking": self.thinking,
        }
        LocalGroups.deliver(self.group, event)
        self._io = asyncio.ensure_future(self._reset_snapshot(snapshot, event, clear_stop))

    async def _reset_snapshot(self, snapshot: dict, event: dict, clear_stop: bool) -> None:
        snap, stop, listeners = self._keys
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(*((snap, stop) if clear_stop else (snap,)))
                pipe.hset(snap, mapping=snapshot)
                pipe.expire(snap, self.ttl)
                pipe.hgetall(listeners)
                *_, found = await pipe.execute()
            self.remote_listeners = remote_listeners(found)
            if self.remote_listeners:
                await self.layer.group_send(self.group, event)
        except Exception:
            log.exception("reply %s: could not reset its snapshot", self.reply_key)
        await self._store_and_forward()  # the fragments made meanwhile

    async def _run(
        self,
        *,
        start_html: str | Callable[[], str],
        blocks: str,
        after: Awaitable[Any] | None = None,
        clear_stop: bool = True,
    ) -> None:
        try:
            if after is not None:
                # ... or once the stream has ended (`finish`), whichever is first.
                await until_first(after, self._closing.wait())
            html = start_html() if callable(start_html) else start_html
            self._init(start_html=html, blocks=blocks, clear_stop=clear_stop)
        except Exception:
            log.exception("reply %s: could not start publishing", self.reply_key)
        while True:
            if not (self._text or self._thinking):
                if self._closing.is_set():
                    return
                try:
                    async with asyncio.timeout(self.stop_poll):
                        await self._wake.wait()
                except TimeoutError:
                    await self._poll_stop()
                    continue
            self._wake.clear()
            if self._text or self._thinking:
                try:
                    await self._publish()
                except Exception:
                    # A fragment lost to a Redis hiccup is repaired by the final replacement.
                    log.exception("reply %s: could not publish a fragment", self.reply_key)
            if self._closing.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._closing.wait()

    async def _poll_stop(self) -> None:
        try:
            if await self.redis.exists(self._keys[1]):
                self.stop_requested.set()
        except Exception:
            log.warning("reply %s: could not read the stop flag", self.reply_key)

    async def _publish(self) -> None:
        text = "".join(self._text)
        thinking = "".join(self._thinking)
        self._text.clear()
        self._thinking.clear()
        before = self._splitter.committed
        self.text += text
        self.thinking += thinking
        committed = self._splitter.advance(self.text)
        blocks = ""
        tail = None
        if committed > before:
            blocks = self.render_markdown(self.text[before:committed])
            self._blocks.append(blocks)
            tail = self.text[committed:]
        self.seq += 1
        seq = self.seq
        html = delta_fragment(self.dom, text=text, blocks=blocks, tail=tail, thinking=thinking)
        event = {
            "type": "reply.delta",
            "reply_key": self.reply_key,
            "seq": seq,
            "html": html,
            "event_id": new_event_id(),
        }
        # This process's sockets first (no round trip). The snapshot and, only after it, the
        # group (a socket that joins after reading the snapshot still gets every later delta)
        # follow in order in the background: a slow Redis slows no frame of this process.
        LocalGroups.deliver(self.group, event)
        self.frames += 1
        if self.first_fragment_at is None:
            self.first_fragment_at = time.monotonic()
        self._unstored.append((text, thinking, blocks, committed, event))
        if self._io is None or self._io.done():
            self._io = asyncio.ensure_future(self._store_and_forward())

    def snapshot(self) -> Snapshot:
        """What this run has published so far (as of the last fragment sent to the sockets)."""
        return Snapshot(
            seq=self.seq,
            status=ReplyStatus.STREAMING,
            dom=self.dom,
            text=self.text,
            committed=self._splitter.committed,
            blocks="".join(self._blocks),
            thinking=self.thinking,
        )

    async def _store_and_forward(self) -> None:
        """Snapshot writes, then the layer's copies, until none is left: fragments made while
        a write is in flight go together in the next one (one write, their events in order),
        so a slow Redis never builds a queue the end of the reply has to wait for."""
        while self._unstored:
            batch, self._unstored = self._unstored, []
            *_, committed, last = batch[-1]
            args = [
                last["seq"],
                "".join(b[0] for b in batch),
                "".join(b[1] for b in batch),
                "".join(b[2] for b in batch),
                committed,
                self.ttl,
            ]
            try:
                stop, listeners = await SnapshotWrites.for_loop().run(self._keys, args)
                remote = self.remote_listeners = remote_listeners(listeners)
                if remote:
                    for *_, event in batch:
                        await self.layer.group_send(self.group, event)
                if stop:
                    self.stop_requested.set()
            except Exception:
                # Fragments lost to a Redis hiccup are repaired by the final replacement.
                log.exception("reply %s: could not store or forward a fragment", self.reply_key)

    async def finish(self) -> None:
        """Publish what is pending at once and stop the loop."""
        self._closing.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self._io is not None:
            with contextlib.suppress(Exception):
                await self._io

    async def done(
        self, *, status: str, html: str, alongside: Awaitable[Any] | None = None
    ) -> None:
        """Announce the end (after the final row is stored): ``reply.done``. ``alongside``
        (e.g. releasing what the run held) runs during the snapshot's last write, and has
        finished before the announcement."""
        await self.finish()
        if _local_publishers.get(self.reply_key) is self:
            _local_publishers.pop(self.reply_key)

        async def close_snapshot() -> bool:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._keys[0], "status", status)
                pipe.expire(self._keys[0], settings.REPLY_DONE_TTL)
                pipe.delete(self._keys[1])
                pipe.hgetall(self._keys[2])
                *_, found = await pipe.execute()
            return remote_listeners(found)

        closing = asyncio.gather(
            close_snapshot(), *([alongside] if alongside is not None else []),
            return_exceptions=True,
        )  # fmt: skip
        remote = (await closing)[0]
        if isinstance(remote, BaseException):
            log.warning("reply %s: could not close its snapshot", self.reply_key)
            remote = True
        await publish(
            self.group,
            {"type": "reply.done", "reply_key": self.reply_key, "status": status, "html": html},
            channel_layer=self.layer,
            layer=remote,
        )

    def abandon(self) -> None:
        """Forget the local stop event (the run ended without ``done``)."""
        if _local_publishers.get(self.reply_key) is self:
            _local_publishers.pop(self.reply_key)
        if self._task is not None and not self._task.done():
            self._task.cancel()


# --- reading the door's stream --------------------------------------------------------------------


@dataclasses.dataclass
class StreamOutcome:
    """How a stream ended, with everything the runner needs to store it."""

    status: str
    message: Any = None  # the SDK Message (Final)
    booked: Any = None  # the door's ledger entry for it (Final)
    error: BaseException | None = None
    partial: Any = None  # what Failed carried
    text: str = ""
    thinking: str = ""
    citations: list = dataclasses.field(default_factory=list)
    ttft_ms: int | None = None
    duration_ms: int = 0
    drained: asyncio.Task | None = None  # the reader, still finishing the door's iterator


STOP_REASON_STATUS: dict[str | None, str] = {
    "end_turn": ReplyStatus.COMPLETE,
    "stop_sequence": ReplyStatus.COMPLETE,
    "tool_use": ReplyStatus.COMPLETE,
    "pause_turn": ReplyStatus.COMPLETE,
    "max_tokens": ReplyStatus.TRUNCATED,
    "model_context_window_exceeded": ReplyStatus.TRUNCATED,
    "refusal": ReplyStatus.REFUSED,
}


class IncompleteStream(Exception):
    """A stream that ended without ``message_stop`` but raised nothing."""

    kind = "incomplete"
    user_message = "The connection to Claude ended before the reply was complete."


class StreamIdle(TimeoutError):
    """Nothing arrived for ``REPLY_IDLE_TIMEOUT_SECONDS``."""

    kind = "idle_timeout"
    user_message = "Claude stopped responding in the middle of the reply. Please try again."


async def stream_reply(
    events: AsyncIterator[Any],
    publisher: ReplyPublisher,
    *,
    started: float | None = None,
    idle_timeout: float | None = None,
) -> StreamOutcome:
    """Feed the door's StreamEvents to ``publisher`` until Final, Failed or Stop.

    Stop is checked between events; a stream that stays silent after Stop (a stall) is
    cancelled after ``REPLY_STOP_GRACE_MS``, and one silent for ``idle_timeout`` seconds
    (default ``REPLY_IDLE_TIMEOUT_SECONDS``) fails. After Final or Failed the door's iterator
    is drained in the background (``outcome.drained``), so the caller can store at once.
    """
    from claudeapp.claude import Citation, Failed, Final, TextDelta, ThinkingDelta

    started = time.monotonic() if started is None else started
    idle_timeout = settings.REPLY_IDLE_TIMEOUT_SECONDS if idle_timeout is None else idle_timeout
    outcome = StreamOutcome(status=ReplyStatus.STREAMING)
    first_token_at: float | None = None
    last_event_at = time.monotonic()
    ended = asyncio.Event()

    def end(status: str, error: BaseException | None = None) -> None:
        if not ended.is_set():
            outcome.status = status
            outcome.error = error
            ended.set()

    async def read() -> None:
        nonlocal first_token_at, last_event_at
        iterator = aiter(events)
        stopped = False
        try:
            async for event in iterator:
                last_event_at = time.monotonic()
                if ended.is_set():
                    continue  # draining after Final/Failed
                if isinstance(event, TextDelta):
                    if first_token_at is None:
                        first_token_at = last_event_at
                    publisher.add_text(event.text)
                elif isinstance(event, ThinkingDelta):
                    if first_token_at is None:
                        first_token_at = last_event_at
                    publisher.add_thinking(event.thinking)
                elif isinstance(event, Citation):
                    outcome.citations.append(event)
                elif isinstance(event, Final):
                    outcome.message, outcome.booked = event.message, event.booked
                    status = STOP_REASON_STATUS.get(
                        getattr(event.message, "stop_reason", None), ReplyStatus.FAILED
                    )
                    end(status, IncompleteStream() if status == ReplyStatus.FAILED else None)
                    continue
                elif isinstance(event, Failed):
                    outcome.partial = getattr(event, "partial", None)
                    end(ReplyStatus.FAILED, event.error)
                    continue
                if publisher.stop_requested.is_set():
                    stopped = True
                    end(ReplyStatus.STOPPED)
                    break
            end(ReplyStatus.FAILED, IncompleteStream())
        except Exception as exc:  # the door raised instead of yielding Failed
            log.warning("reply %s: the stream raised %r", publisher.reply_key, exc)
            end(ReplyStatus.FAILED, exc)
        finally:
            if stopped:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()

    async def cut(status: str, error: BaseException | None) -> None:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        end(status, error)

    reader = ReplyRegistry.spawn(read(), name=f"reader {publisher.reply_key}")
    ended_wait = asyncio.ensure_future(ended.wait())
    stop_wait = asyncio.ensure_future(publisher.stop_requested.wait())
    try:
        while not ended.is_set():
            silent_for = time.monotonic() - last_event_at
            if silent_for >= idle_timeout:
                await cut(ReplyStatus.FAILED, StreamIdle())
                break
            await asyncio.wait(
                {ended_wait, stop_wait},
                timeout=idle_timeout - silent_for,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if publisher.stop_requested.is_set() and not ended.is_set():
                # Stop while the stream is silent: give it a moment, then cut it.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(settings.REPLY_STOP_GRACE_MS / 1000):
                        await ended.wait()
                if not ended.is_set():
                    await cut(ReplyStatus.STOPPED, None)
    except asyncio.CancelledError:
        reader.cancel()
        raise
    finally:
        ended_wait.cancel()
        stop_wait.cancel()
    await publisher.finish()
    # Only what this run added (a continuation starts from the reply's earlier text).
    outcome.text = publisher.text[publisher.initial_text_len :]
    outcome.thinking = publisher.thinking[publisher.initial_thinking_len :]
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    if first_token_at is not None:
        outcome.ttft_ms = int((first_token_at - started) * 1000)
    outcome.drained = reader
    return outcome


def user_message_for(error: BaseException | None) -> str:
    """The plain-words reason a reply failed (the door's typed errors carry one)."""
    if error is None:
        return "The reply could not be completed."
    message = getattr(error, "user_message", None)
    if message:
        return str(message)
    if isinstance(error, TimeoutError):
        return "Claude took too long to answer."
    return "Something went wrong while Claude was answering."


def error_kind_for(error: BaseException | None) -> str:
    if error is None:
        return ""
    return str(getattr(error, "kind", "") or type(error).__name__)[:60]


# --- heartbeat -----------------------------------------------------------------------------------


async def heartbeat_loop(
    model: type[Reply], pk: object, run_id: object, *, extra: Callable[[], Awaitable[None]] | None
) -> None:
    """Every ``REPLY_HEARTBEAT_SECONDS``: prove the runner is alive (cancel to stop)."""

    @parallel_db
    def beat() -> int:
        return model.objects.filter(pk=pk, run_id=run_id, status=ReplyStatus.STREAMING).update(
            heartbeat_at=timezone.now()
        )

    while True:
        await asyncio.sleep(settings.REPLY_HEARTBEAT_SECONDS)
        try:
            if not await beat():
                return
            if extra is not None:
                await extra()
        except Exception:
            log.warning("reply %s: heartbeat failed", reply_key_for(model._meta.label_lower, pk))


# --- the sweeper ---------------------------------------------------------------------------------

STALE_ERROR = (
    "The reply was interrupted because the server handling it stopped. Retry to try again."
)


@shared_task(name="claudeapp.replies.sweep_stale_replies")
def sweep_stale_replies(stale_after_seconds: float | None = None) -> int:
    """Mark ``streaming`` replies whose runner went quiet ``failed``; returns how many.

    Safe to run twice and beside live runners: a row is taken only while it is still
    ``streaming`` with the heartbeat it was found with.
    """
    stale_after = (
        settings.REPLY_STALE_SECONDS if stale_after_seconds is None else stale_after_seconds
    )
    cutoff = timezone.now() - datetime.timedelta(seconds=stale_after)
    swept = 0
    for model in reply_models():
        stale = model.objects.filter(status=ReplyStatus.STREAMING).filter(
            Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        )
        for reply in stale.iterator():
            try:
                partial = reply.reply_partial_fields(reply_snapshot_sync(reply.reply_key))
            except Exception:
                log.exception("sweeper: no partial text for %s", reply.reply_key)
                partial = {}
            taken = model.objects.filter(
                pk=reply.pk,
                status=ReplyStatus.STREAMING,
                heartbeat_at=reply.heartbeat_at,
                run_id=reply.run_id,
            ).update(
                status=ReplyStatus.FAILED,
                error=STALE_ERROR,
                error_kind="runner_lost",
                finished_at=timezone.now(),
                **partial,
            )
            if not taken:
                continue
            swept += 1
            reply.refresh_from_db()
            try:
                reply.reply_after_sweep()
                _announce_swept(reply)
            except Exception:
                log.exception("sweeper: could not finish %s", reply.reply_key)
    if swept:
        log.warning("sweeper marked %d stale replies failed", swept)
    return swept


def _announce_swept(reply: Reply) -> None:
    redis = get_redis()
    with redis.pipeline(transaction=True) as pipe:
        pipe.hset(snapshot_key(reply.reply_key), "status", ReplyStatus.FAILED)
        pipe.expire(snapshot_key(reply.reply_key), settings.REPLY_DONE_TTL)
        pipe.delete(stop_key(reply.reply_key))
        pipe.execute()
    async_to_sync(get_channel_layer().group_send)(
        reply.reply_group,
        {
            "type": "reply.done",
            "reply_key": reply.reply_key,
            "status": ReplyStatus.FAILED,
            "html": reply.reply_done_html(),
            "event_id": uuid.uuid4().hex,
        },
    )


class ReplyRegistry:
    """Strong references to running reply tasks of this process (asyncio keeps weak ones)."""

    tasks: ClassVar[set[asyncio.Task]] = set()

    @classmethod
    def spawn(cls, coro: Awaitable[Any], *, name: str) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        cls.tasks.add(task)
        task.add_done_callback(cls.tasks.discard)
        return task
