"""Paced delivery of a pre-rendered SSE stream against absolute deadlines.

A stream becomes a *plan*: ``(due, bytes)`` steps in event-loop time (or :data:`DROP`), built
once from the rendered events, the pacing settings and any mid-stream fault. Token *i* (0-based)
is due at ``arrived + ttft + i / tps``; a ``stall`` fault shifts every later step; the other
mid-stream faults cut the plan short (an ``error`` event, :data:`DROP`, or a clean end).

Under uvicorn the plan runs on event-loop timers and writes each step straight to the socket
as an HTTP chunk: per token that is one timer callback and one write, with no task wake-up,
future or generator frame, which is what keeps 200 paced streams on time on a small machine.
Steps already due when a timer fires go out together, so a late stream catches up at once and
never accumulates drift. Where the transport is not reachable (another ASGI server) the same
plan runs through ``await send(...)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .faults import Fault
from .sse import Rendered, error_event

__all__ = ["DROP", "Plan", "build_plan", "run_plan"]

# Yielded in place of bytes: drop the connection here (no terminating chunk).
DROP = object()
# uvloop timers have millisecond resolution: a step this close to due counts as due.
TOLERANCE = 0.001

Plan = list[tuple[float, object]]


def build_plan(
    rendered: Rendered,
    arrived: float,
    ttft: float,
    tps: float,
    fault: Fault | None,
    request_id: str,
) -> Plan:
    slots = rendered.slots
    n = len(slots)
    interval = 1 / tps if tps > 0 else 0.0
    first_due = arrived + ttft
    cut = None
    kind = fault.kind if fault is not None else None
    if kind in ("midstream_error", "disconnect", "early_end") or (
        kind == "stall" and fault.after_tokens is not None
    ):
        cut = min(n, fault.after_tokens or 0)
    plan: Plan = [(arrived, rendered.preamble)]
    shift = 0.0
    for i in range(n + 1):
        if i == cut:
            last_due = plan[-1][0]
            if kind == "midstream_error":
                error_type = fault.spec.get("error_type", "overloaded_error")
                message = fault.spec.get("message", "Overloaded")
                plan.append((last_due, error_event(error_type, message, request_id)))
                return plan
            if kind == "disconnect":
                plan.append((last_due, DROP))
                return plan
            if kind == "early_end":
                return plan
            shift = int(fault.spec["ms"]) / 1000  # stall: everything after waits longer
        if i == n:
            break
        plan.append((first_due + i * interval + shift, slots[i]))
    trailer_due = plan[-1][0] if n else first_due
    if kind == "stall" and cut == n:
        trailer_due += shift  # a stall after the last token holds back message_stop
    plan.append((trailer_due, rendered.trailer))
    return plan


async def run_plan(
    plan: Plan, send: Callable, receive: Callable, record: Callable[[float], None] | None = None
) -> str:
    """Deliver ``plan`` after ``http.response.start`` was sent.

    Returns ``"done"`` (the caller completes the response), ``"drop"`` (the caller drops the
    connection) or ``"gone"`` (the client disconnected). ``record`` gets how late (seconds)
    the last step went out, for the pacing figures in the stats.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    loop = asyncio.get_running_loop()
    if transport is not None and getattr(cycle, "chunked_encoding", None) is True:
        done: asyncio.Future[str] = loop.create_future()
        _TimerRun(loop, cycle, transport, plan, done).step()
        outcome = await done
    else:
        outcome = await _run_with_send(plan, send, cycle)
    if record is not None and outcome == "done" and plan:
        record(max(0.0, loop.time() - plan[-1][0]))
    return outcome


class _TimerRun:
    __slots__ = ("cycle", "done", "i", "loop", "plan", "transport")

    def __init__(self, loop, cycle, transport, plan: Plan, done: asyncio.Future) -> None:
        self.loop = loop
        self.cycle = cycle
        self.transport = transport
        self.plan = plan
        self.done = done
        self.i = 0

    def _finish(self, outcome: str) -> None:
        if not self.done.done():
            self.done.set_result(outcome)

    def step(self) -> None:
        try:
            if self.cycle.disconnected or self.transport.is_closing():
                self._finish("gone")
                return
            plan = self.plan
            horizon = self.loop.time() + TOLERANCE
            out: list[bytes] = []
            while self.i < len(plan):
                due, item = plan[self.i]
                if due > horizon:
                    break
                self.i += 1
                if item is DROP:
                    self._write(out)
                    self._finish("drop")
                    return
                out.append(item)  # type: ignore[arg-type]
            self._write(out)
            if self.i >= len(plan):
                self._finish("done")
            else:
                self.loop.call_at(plan[self.i][0], self.step)
        except BaseException as exc:  # a timer callback must never leave the request hanging
            if not self.done.done():
                self.done.set_exception(exc)

    def _write(self, out: list[bytes]) -> None:
        if out:
            data = b"".join(out)
            # The same chunk framing uvicorn's send() writes for a chunked body.
            self.transport.write(b"%x\r\n%b\r\n" % (len(data), data))


async def _run_with_send(plan: Plan, send: Callable, cycle: object) -> str:
    loop = asyncio.get_running_loop()
    i = 0
    while i < len(plan):
        delay = plan[i][0] - loop.time()
        if delay > TOLERANCE:
            await asyncio.sleep(delay)
        horizon = loop.time() + TOLERANCE
        out: list[bytes] = []
        while i < len(plan) and plan[i][0] <= horizon:
            item = plan[i][1]
            i += 1
            if item is DROP:
                if out:
                    await send(
                        {"type": "http.response.body", "body": b"".join(out), "more_body": True}
                    )
                return "drop"
            out.append(item)  # type: ignore[arg-type]
        if out:
            await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
        if getattr(cycle, "disconnected", False):
            return "gone"
    return "done"


async def _send_body(send: Callable, out: list[bytes]) -> None:
    if out:
        await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
