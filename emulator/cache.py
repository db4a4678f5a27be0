"""The emulator's prompt cache: exact-prefix matching up to cache breakpoints.

The real API caches the rendered prompt in the order tools -> system -> messages and keys each
entry by the exact prefix up to a breakpoint (a block carrying ``cache_control``, or the
automatic one that a top-level ``cache_control`` places on the last cacheable block). A request
reads the longest cached prefix it can find by looking back from each of its breakpoints, and
writes everything after that up to its last breakpoint. Usage then splits the prompt into
``cache_read_input_tokens`` + ``cache_creation_input_tokens`` + ``input_tokens`` (the uncached
remainder), which always add up to the token count of the request (reference section F, J).

Segments come from ``emulator.tokens.request_segments``: one per tool, system block and
message content block, each with its token count, its ``cache_control`` and a fingerprint of
the block without its ``cache_control`` (so moving a breakpoint never changes a key).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

TTL_SECONDS: dict[str, float] = {"5m": 300.0, "1h": 3600.0}
DEFAULT_TTL = "5m"
MAX_BREAKPOINTS = 4
# The real API checks for hits at up to ~20 block boundaries before each breakpoint, which is
# what lets a conversation whose breakpoint moved forward still read the previous turn's entry.
LOOKBACK_BLOCKS = 20
# Thinking blocks cannot carry cache_control, so the automatic breakpoint skips them ("empty"
# is tokens.py's overhead-only segment for a message with no blocks).
NON_CACHEABLE_KINDS = frozenset({"thinking", "redacted_thinking", "empty"})
# Expired entries are swept when the table grows past this, so a long run stays bounded.
_SWEEP_AT = 50_000

TTL_ORDER_MESSAGE = (
    "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block. "
    "Note that blocks are processed in the following order: `tools`, `system`, `messages`."
)


class SegmentLike(Protocol):
    """What the cache needs of ``emulator.tokens.Segment``."""

    @property
    def kind(self) -> str: ...
    @property
    def tokens(self) -> int: ...
    @property
    def cache_control(self) -> dict | None: ...
    @property
    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class Breakpoint:
    index: int  # position of the segment that carries it
    ttl: str  # "5m" | "1h"
    automatic: bool  # placed by the top-level cache_control


@dataclass(frozen=True)
class CacheUsage:
    input_tokens: int
    cache_creation_input_tokens: int
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int
    cache_read_input_tokens: int

    def usage_fields(self) -> dict[str, Any]:
        """The fields of ``usage`` this decides, in the wire shape."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.ephemeral_5m_input_tokens,
                "ephemeral_1h_input_tokens": self.ephemeral_1h_input_tokens,
            },
        }


@dataclass
class _Entry:
    ttl: str
    expires_at: float


def _ttl_of(cache_control: dict | None) -> str:
    ttl = (cache_control or {}).get("ttl")
    return ttl if isinstance(ttl, str) else DEFAULT_TTL


def last_cacheable_index(segments: Sequence[SegmentLike]) -> int | None:
    for i in range(len(segments) - 1, -1, -1):
        if segments[i].kind not in NON_CACHEABLE_KINDS:
            return i
    return None


def find_breakpoints(
    segments: Sequence[SegmentLike], top_level_cache_control: dict | None
) -> list[Breakpoint]:
    """Explicit breakpoints plus the automatic one, in prompt order.

    The automatic breakpoint lands on the last cacheable segment; when that segment already
    has its own cache_control the two are one breakpoint (the explicit TTL wins).
    """
    points = [
        Breakpoint(i, _ttl_of(seg.cache_control), False)
        for i, seg in enumerate(segments)
        if seg.cache_control
    ]
    if top_level_cache_control:
        last = last_cacheable_index(segments)
        if last is not None and not segments[last].cache_control:
            points.append(Breakpoint(last, _ttl_of(top_level_cache_control), True))
    points.sort(key=lambda p: p.index)
    return points


def segment_paths(body: dict) -> list[str]:
    """Error-message paths (``tools.0``, ``system.1``, ``messages.2.content.0``), one per
    segment in the order ``emulator.tokens.request_segments`` yields them, so
    ``check_breakpoints`` can name the offending block."""
    paths: list[str] = []
    for i, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict):
            paths.append(f"tools.{i}")
    system = body.get("system")
    if isinstance(system, str):
        paths.append("system")
    elif isinstance(system, list):
        paths.extend(f"system.{i}" for i, b in enumerate(system) if isinstance(b, dict))
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            paths.append(f"messages.{i}.content")
            continue
        blocks = content if isinstance(content, list) else []
        indexed = [f"messages.{i}.content.{j}" for j, b in enumerate(blocks) if isinstance(b, dict)]
        # A message without blocks is still one (overhead-only) segment.
        paths.extend(indexed or [f"messages.{i}.content"])
    return paths


def check_breakpoints(
    segments: Sequence[SegmentLike],
    top_level_cache_control: dict | None,
    paths: Sequence[str] | None = None,
) -> str | None:
    """The real API's 400 message for a bad set of breakpoints, or None.

    Checks, in this order: unknown ``ttl`` values, more than 4 breakpoints (the automatic one
    counts unless it lands on a block that already has cache_control), and a 1h breakpoint
    after a 5m one. ``paths`` (from ``segment_paths``) prefixes the message with the block's
    location when it lines up with ``segments``.
    """
    if paths is not None and len(paths) != len(segments):
        paths = None

    def where(point: Breakpoint) -> str:
        if point.automatic:
            return "cache_control.ttl: "
        if paths is None:
            return ""
        return f"{paths[point.index]}.cache_control.ttl: "

    controls: list[tuple[Breakpoint, dict]] = [
        (Breakpoint(i, _ttl_of(s.cache_control), False), s.cache_control)
        for i, s in enumerate(segments)
        if s.cache_control
    ]
    if top_level_cache_control:
        controls.append((Breakpoint(-1, _ttl_of(top_level_cache_control), True), {}))
    for point, control in controls:
        raw = (control or top_level_cache_control or {}).get("ttl")
        if raw is not None and raw not in TTL_SECONDS:
            return f"{where(point)}Input should be '5m' or '1h'"

    points = find_breakpoints(segments, top_level_cache_control)
    if len(points) > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(points)}."
        )
    seen_5m = False
    for point in points:
        if point.ttl == "5m":
            seen_5m = True
        elif point.ttl == "1h" and seen_5m:
            return where(point) + TTL_ORDER_MESSAGE
    return None


def _prefix_keys(model: str, segments: Sequence[SegmentLike]) -> list[str]:
    """keys[i] identifies the exact prefix segments[0..i] for this model (a hash chain, so
    computing every prefix's key is linear)."""
    keys: list[str] = []
    running = hashlib.sha256(model.encode()).digest()
    for seg in segments:
        running = hashlib.sha256(running + seg.fingerprint.encode()).digest()
        keys.append(running.hex())
    return keys


class PromptCache:
    """Process-wide prompt cache shared by live calls and batch processing (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.write_tokens = 0
        self.read_tokens = 0

    def apply(
        self,
        model: str,
        segments: Sequence[SegmentLike],
        top_level_cache_control: dict | None,
        min_cacheable_tokens: int,
        now: float | None = None,
    ) -> CacheUsage:
        """Read and write the cache for one request and return its usage split.

        Call it once per request that actually runs (not for count_tokens, not for requests
        rejected by validation), after validation, with the request's canonical model id.
        """
        now = self._clock() if now is None else now
        total = sum(seg.tokens for seg in segments)
        points = find_breakpoints(segments, top_level_cache_control)
        if not points:
            return CacheUsage(total, 0, 0, 0, 0)

        cumulative: list[int] = []
        running = 0
        for seg in segments:
            running += seg.tokens
            cumulative.append(running)
        keys = _prefix_keys(model, segments)

        with self._lock:
            read_end = self._longest_hit(points, keys, now)
            read = cumulative[read_end] if read_end >= 0 else 0
            if read_end >= 0:
                self._refresh(points, keys, read_end, now)

            # Every breakpoint past the read prefix whose prefix is long enough gets an entry.
            # The tokens between the read prefix and a written breakpoint are billed at that
            # breakpoint's TTL (1h breakpoints come first, so the 1h part is the stable head).
            written = {"5m": 0, "1h": 0}
            previous = read_end
            for point in points:
                if point.index <= read_end:
                    continue
                if cumulative[point.index] < min_cacheable_tokens:
                    continue
                start = cumulative[previous] if previous >= 0 else 0
                written[point.ttl] += cumulative[point.index] - start
                previous = point.index
                self._entries[keys[point.index]] = _Entry(point.ttl, now + TTL_SECONDS[point.ttl])
            if len(self._entries) > _SWEEP_AT:
                self._sweep(now)
            creation = written["5m"] + written["1h"]
            self.write_tokens += creation
            self.read_tokens += read

        return CacheUsage(
            input_tokens=total - read - creation,
            cache_creation_input_tokens=creation,
            ephemeral_5m_input_tokens=written["5m"],
            ephemeral_1h_input_tokens=written["1h"],
            cache_read_input_tokens=read,
        )

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            del self._entries[key]
            return None
        return entry

    def _longest_hit(self, points: list[Breakpoint], keys: list[str], now: float) -> int:
        best = -1
        for point in points:
            low = max(point.index - LOOKBACK_BLOCKS, best + 1)
            for position in range(point.index, low - 1, -1):
                if self._live(keys[position], now) is not None:
                    best = position
                    break
        return best

    def _refresh(self, points: list[Breakpoint], keys: list[str], read_end: int, now: float):
        # A read refreshes the entry it hit, and any shorter entries this request's own
        # breakpoints also cover, for the TTL of the breakpoint that covers them now.
        covering = next(p for p in points if p.index >= read_end)
        positions = {read_end} | {p.index for p in points if p.index < read_end}
        for position in positions:
            entry = self._live(keys[position], now)
            if entry is None:
                continue
            ttl = covering.ttl if position == read_end else _covering_ttl(points, position)
            entry.ttl = ttl
            entry.expires_at = now + TTL_SECONDS[ttl]

    def _sweep(self, now: float) -> None:
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]

    def stats(self) -> dict[str, int]:
        """For ``/_emulator/stats`` -> ``"cache": {...}``."""
        with self._lock:
            return {
                "write_tokens": self.write_tokens,
                "read_tokens": self.read_tokens,
                "entries": len(self._entries),
            }

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
            self.write_tokens = 0
            self.read_tokens = 0


def _covering_ttl(points: list[Breakpoint], position: int) -> str:
    for point in points:
        if point.index >= position:
            return point.ttl
    return DEFAULT_TTL
