"""The reply publisher's snapshot writes, against the test Redis: many replies' writes go in one
pipeline, a reply's fragments made while its write is in flight go in the next one together,
and a socket of the runner's own process reads the text so far from memory."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from claudeapp.redis import get_async_redis
from claudeapp.replies import (
    ReplyPublisher,
    Snapshot,
    SnapshotWrites,
    reply_snapshot,
    snapshot_key,
    stop_key,
)
from claudeapp.testing.ports import free_port


class RecordingLayer:
    """A channel layer that keeps what the publisher sends through it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, event: dict) -> None:
        self.sent.append((group, event))


def _keys(name: str) -> list[str]:
    return [snapshot_key(name), stop_key(name), f"{snapshot_key(name)}:no-listeners"]


def _args(seq: int, text: str) -> list:
    return [seq, text, "", "", 0, 60]


async def _snapshot_in_redis(reply_key: str) -> Snapshot | None:
    return Snapshot.from_redis(await get_async_redis().hgetall(snapshot_key(reply_key)))


def _count_pipelines(writes: SnapshotWrites) -> list[int]:
    """Wraps the client's `pipeline` (it still runs): one entry per pipeline opened."""
    opened: list[int] = []
    real = writes.redis.pipeline

    def counted(*args, **kwargs):
        opened.append(1)
        return real(*args, **kwargs)

    writes.redis.pipeline = counted  # type: ignore[method-assign]
    return opened


def test_many_replies_writes_made_in_one_loop_pass_go_to_redis_in_one_pipeline() -> None:
    names = [f"test.reply:{uuid.uuid4()}" for _ in range(20)]

    async def run() -> list:
        writes = SnapshotWrites.for_loop()
        assert SnapshotWrites.for_loop() is writes  # one per event loop
        opened = _count_pipelines(writes)
        await get_async_redis().set(stop_key(names[7]), "1", ex=60)
        results = await asyncio.gather(
            *(writes.run(_keys(name), _args(1, f"text of {i}")) for i, name in enumerate(names))
        )
        snapshots = [await _snapshot_in_redis(name) for name in names]
        await get_async_redis().delete(*(k for name in names for k in _keys(name)))
        return [opened, results, snapshots]

    opened, results, snapshots = asyncio.run(run())
    assert len(opened) == 1
    # Each fragment got its own reply: the Stop flag of one reply reaches that reply only.
    assert [stop for stop, _ in results] == [1 if i == 7 else 0 for i in range(20)]
    assert [s.text for s in snapshots] == [f"text of {i}" for i in range(20)]
    assert all(s.seq == 1 for s in snapshots)


def test_a_lone_write_waits_for_no_one_and_a_script_redis_forgot_is_loaded_again() -> None:
    names = [f"test.reply:{uuid.uuid4()}" for _ in range(3)]

    async def run() -> list:
        writes = SnapshotWrites.for_loop()
        opened = _count_pipelines(writes)
        alone = await writes.run(_keys(names[0]), _args(1, "alone"))
        # Redis lost its scripts (a restart): the batch loads it again and still answers.
        await get_async_redis().script_flush()
        both = await asyncio.gather(
            writes.run(_keys(names[1]), _args(1, "one")),
            writes.run(_keys(names[2]), _args(1, "two")),
        )
        texts = [(await _snapshot_in_redis(name)).text for name in names]
        await get_async_redis().delete(*(k for name in names for k in _keys(name)))
        return [opened, alone, both, texts]

    opened, alone, both, texts = asyncio.run(run())
    assert alone[0] == 0 and len(opened) == 1  # the lone write was no pipeline
    assert [stop for stop, _ in both] == [0, 0]
    assert texts == ["alone", "one", "two"]


def test_a_redis_failure_reaches_every_fragment_of_the_batch() -> None:
    async def run() -> list:
        writes = SnapshotWrites.for_loop()
        dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5)
        writes.redis, writes.script = dead, dead.register_script(writes.script.script)
        try:
            return await asyncio.gather(
                *(writes.run(_keys(f"test.reply:{i}"), _args(1, "x")) for i in range(3)),
                return_exceptions=True,
            )
        finally:
            await dead.aclose()

    results = asyncio.run(run())
    assert len(results) == 3
    assert all(isinstance(r, aioredis.ConnectionError) for r in results), results


@pytest.mark.parametrize("remote", [True, False])
def test_fragments_made_during_a_write_are_stored_together_and_forwarded_in_order(
    remote: bool,
) -> None:
    reply_key = f"test.reply:{uuid.uuid4()}"
    group = f"test-group-{uuid.uuid4().hex}"

    async def run() -> list:
        layer = RecordingLayer()
        publisher = ReplyPublisher(
            reply_key=reply_key, group=group, dom="m-x", render_markdown=lambda t: f"<p>{t}</p>",
            interval=10.0, channel_layer=layer,
        )  # fmt: skip
        if not remote:  # a socket of this process, and none elsewhere: the layer is skipped
            from claudeapp.replies import PROCESS_ID, listeners_key

            await get_async_redis().hset(listeners_key(group), PROCESS_ID, 1)
        await publisher.start(start_html="<p>start</p>")
        while not publisher.started:
            await asyncio.sleep(0.001)
        await publisher._io  # the snapshot's reset in Redis (the local start went at once)
        writes = SnapshotWrites.for_loop()
        calls: list[list] = []
        real_run = writes.run

        def counted(keys, args):
            calls.append(args)
            return real_run(keys, args)

        writes.run = counted  # type: ignore[method-assign]
        # One fragment; then, while its write is in flight, three more.
        publisher.add_text("One. ")
        await publisher._publish()
        await asyncio.sleep(0)
        for text in ("Two. ", "Three.\n\n", "Four "):
            publisher.add_text(text)
            await publisher._publish()
        in_memory = await reply_snapshot(reply_key)
        await publisher.finish()
        in_redis = await _snapshot_in_redis(reply_key)
        await publisher.done(status="complete", html="<p>done</p>")
        after_done = await reply_snapshot(reply_key)
        await get_async_redis().delete(*_keys(reply_key), listeners_key_of(group))
        return [layer.sent, calls, in_memory, in_redis, after_done]

    sent, calls, in_memory, in_redis, after_done = asyncio.run(run())
    # Two writes, not four: the first fragment's, then the three made meanwhile as one.
    assert [args[0] for args in calls] == [1, 4]
    assert calls[1][1] == "Two. Three.\n\nFour "
    # A socket of this process joining now reads it all from memory, Redis has it after finish.
    assert in_memory.seq == 4 and in_memory.text == "One. Two. Three.\n\nFour "
    assert (in_redis.seq, in_redis.text, in_redis.committed, in_redis.blocks) == (
        in_memory.seq, in_memory.text, in_memory.committed, in_memory.blocks,
    )  # fmt: skip
    assert in_memory.blocks == "<p>One. Two. Three.\n\n</p>" and in_memory.tail == "Four "
    assert after_done.status == "complete"  # the run is over: Redis answers again
    deltas = [event["seq"] for _, event in sent if event["type"] == "reply.delta"]
    assert deltas == ([1, 2, 3, 4] if remote else [])
    kinds = [event["type"] for _, event in sent]
    assert kinds == (["reply.start"] + ["reply.delta"] * 4 + ["reply.done"] if remote else [])


def listeners_key_of(group: str) -> str:
    from claudeapp.replies import listeners_key

    return listeners_key(group)


def test_the_start_and_first_fragment_reach_local_sockets_before_redis_and_are_stored_after_it():
    from claudeapp.replies import LocalGroups

    reply_key = f"test.reply:{uuid.uuid4()}"
    group = f"test-group-{uuid.uuid4().hex}"

    async def run() -> list:
        got: list[dict] = []
        LocalGroups.add(group, got.append)
        publisher = ReplyPublisher(
            reply_key=reply_key, group=group, dom="m-y", render_markdown=lambda t: t,
            interval=10.0, channel_layer=RecordingLayer(),
        )  # fmt: skip
        await publisher.start(start_html="<p>start</p>")
        while not publisher.started:
            await asyncio.sleep(0)
        reset = publisher._io
        publisher.add_text("Hello")
        await publisher._publish()
        # Both went to this process's socket while the snapshot's reset was still in flight.
        seen = [(e["type"], e.get("seq")) for e in got]
        pending = not reset.done()
        await publisher.finish()
        stored = await _snapshot_in_redis(reply_key)
        await publisher.done(status="complete", html="")
        LocalGroups.discard(group, got.append)
        await get_async_redis().delete(*_keys(reply_key))
        return [seen, pending, stored]

    seen, pending, stored = asyncio.run(run())
    assert seen == [("reply.start", 0), ("reply.delta", 1)] and pending
    # The reset went first and the fragment's write after it: nothing was wiped.
    assert (stored.seq, stored.text) == (1, "Hello")
