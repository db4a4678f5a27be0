"""Work that many tasks of one event loop ask for at once, done together.

A web process streaming a hundred replies asks Redis, or the shared ORM thread, for the same
small thing a hundred times in the same moment; one round trip or one thread hop each is what
queues up. A :class:`LoopBatch` collects the items submitted during one pass of its event loop
and sends them in one go at the end of that pass; items submitted while a batch is in flight
go in the next one. Batches grow with the load, and a lone item waits for no one.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
from typing import Any, ClassVar

__all__ = ["LoopBatch"]


class LoopBatch[Item](abc.ABC):
    """One instance per event loop and subclass (:meth:`for_loop`). A subclass implements
    :meth:`send`: one result per item, in order; an exception in place of a result fails that
    item only, an exception raised by ``send`` fails the whole batch."""

    _by_loop: ClassVar[dict[asyncio.AbstractEventLoop, LoopBatch]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._by_loop = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: list[tuple[Item, asyncio.Future]] = []
        self.flushing = False

    @classmethod
    def for_loop(cls) -> Any:
        loop = asyncio.get_running_loop()
        batch = cls._by_loop.get(loop)
        if batch is None:
            for stale in [other for other in cls._by_loop if other.is_closed()]:
                del cls._by_loop[stale]
            batch = cls._by_loop[loop] = cls(loop)
        return batch

    def submit(self, item: Item) -> asyncio.Future:
        """A future for the item's result."""
        future = self.loop.create_future()
        self.queue.append((item, future))
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self._flush)
        return future

    @abc.abstractmethod
    async def send(self, items: list[Item]) -> list[Any]:
        """Do the work for ``items`` at once: one result (or exception) per item, in order."""

    def _flush(self) -> None:
        batch, self.queue = self.queue, []
        # A context of its own, not that of whichever caller came first (an HTTP request's
        # thread-sensitive context, say, may end before the batch does).
        task = self.loop.create_task(self._deliver(batch), context=contextvars.Context())
        task.add_done_callback(self._sent)

    def _sent(self, _task: asyncio.Task) -> None:
        if self.queue:
            self._flush()
        else:
            self.flushing = False

    async def _deliver(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        try:
            results = await self.send([item for item, _ in batch])
        except Exception as exc:
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
