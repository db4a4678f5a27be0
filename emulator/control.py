"""Run-time configuration, statistics, rate limiting and the loopback check.

Everything here is what ``/_emulator/config`` and ``/_emulator/stats`` expose, plus the
``anthropic-ratelimit-*`` headers every reply carries.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

__all__ = ["Config", "RateLimiter", "Stats", "is_loopback"]


@dataclass
class Config:
    """Defaults suit interactive ``make run``; tests use ``--ttft-ms 0 --tokens-per-second 0``."""

    ttft_ms: int = 300
    tokens_per_second: float = 60.0  # <= 0: unpaced, as fast as the socket takes it
    batch_seconds: float = 2.0
    rate_limit_rpm: int | None = None  # None: no limit enforced
    seed: int = 0
    # Batch limits (the real API's, reference E.2); tests lower them to reach the 400 / 413
    # without sending 100,000 requests or 256 MB.
    batch_max_requests: int = 100_000
    batch_max_bytes: int = 256 * 1024 * 1024

    def as_dict(self) -> dict:
        return asdict(self)

    def update(self, changes: object) -> None:
        """Apply a partial update; ``ValueError`` (and nothing changed) on a bad field."""
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        checked: dict = {}
        for key, value in changes.items():
            if key == "ttft_ms" or key == "seed":
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{key}: must be an integer >= 0")
            elif key in ("tokens_per_second", "batch_seconds"):
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{key}: must be a number >= 0")
                value = float(value)
            elif key in ("batch_max_requests", "batch_max_bytes"):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"{key}: must be an integer >= 1")
            elif key == "rate_limit_rpm":
                if value is not None and (
                    not isinstance(value, int) or isinstance(value, bool) or value < 1
                ):
                    raise ValueError("rate_limit_rpm: must be an integer >= 1 or null")
            else:
                raise ValueError(f"{key}: unknown setting")
            checked[key] = value
        for key, value in checked.items():
            setattr(self, key, value)


class Stats:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.retries = 0
        self.faults: Counter[str] = Counter()
        # Sections kept by their owners (the prompt cache, the batch store), read at snapshot
        # time: ``{"cache": cache.stats, "batches": batches.stats}``.
        self.sections: dict[str, Callable[[], dict]] = {}
        # How late the last event of recent paced streams went out: lets a benchmark check
        # that the emulator itself kept time.
        self.stream_lateness: deque[float] = deque(maxlen=10_000)

    def reset(self) -> None:
        self.stream_lateness.clear()
        self.requests.clear()
        self.retries = 0
        self.faults.clear()

    def snapshot(self) -> dict:
        sections = {name: read() for name, read in self.sections.items()}
        return {
            "requests": dict(self.requests),
            "retries": self.retries,
            "cache": sections.pop("cache", {"write_tokens": 0, "read_tokens": 0}),
            "batches": sections.pop("batches", {"created": 0, "ended": 0}),
            "faults": dict(self.faults),
            "pacing": self._pacing(),
            **sections,
        }

    def _pacing(self) -> dict:
        late = sorted(self.stream_lateness)
        if not late:
            return {"streams": 0}

        def ms(q: float) -> float:
            return round(1000 * late[min(len(late) - 1, int(q * (len(late) - 1)))], 2)

        late_ms = {"p50": ms(0.5), "p95": ms(0.95), "max": ms(1)}
        return {"streams": len(late), "end_late_ms": late_ms}


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class RateLimiter:
    """A one-minute sliding window of requests and tokens.

    Requests are refused (429) only when ``rate_limit_rpm`` is set. The token limits are
    informational: they appear, with what the last minute used, in the headers.
    """

    WINDOW = 60.0
    DEFAULT_RPM = 4000
    INPUT_LIMIT = 2_000_000
    OUTPUT_LIMIT = 400_000

    def __init__(self) -> None:
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int, int]] = deque()
        self._in = 0
        self._out = 0
        self._stamp_second = -1
        self._stamp = ""

    def _expire(self, now: float) -> None:
        edge = now - self.WINDOW
        while self._requests and self._requests[0] <= edge:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= edge:
            _, i, o = self._tokens.popleft()
            self._in -= i
            self._out -= o

    def admit(self, rpm: int | None, now: float | None = None) -> float | None:
        """Count a request; if over ``rpm``, count nothing and return seconds to wait."""
        now = time.time() if now is None else now
        self._expire(now)
        if rpm is not None and len(self._requests) >= rpm:
            return max(0.001, self._requests[0] + self.WINDOW - now)
        self._requests.append(now)
        return None

    def record_tokens(self, input_tokens: int, output_tokens: int) -> None:
        self._tokens.append((time.time(), input_tokens, output_tokens))
        self._in += input_tokens
        self._out += output_tokens

    def _reset_stamp(self, now: float) -> str:
        # Formatting a timestamp per reply is measurable at thousands of replies a second.
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = rfc3339(now)
        return self._stamp

    def headers(self, rpm: int | None) -> list[tuple[bytes, bytes]]:
        now = time.time()
        self._expire(now)
        limit = rpm or self.DEFAULT_RPM
        oldest = self._requests[0] + self.WINDOW if self._requests else now
        req_reset = rfc3339(oldest) if self._requests else self._reset_stamp(now)
        in_left = _thousands(self.INPUT_LIMIT - self._in)
        out_left = _thousands(self.OUTPUT_LIMIT - self._out)
        tok_reset = rfc3339(self._tokens[0][0] + self.WINDOW) if self._tokens else req_reset
        pairs = (
            ("requests-limit", limit),
            ("requests-remaining", max(0, limit - len(self._requests))),
            ("requests-reset", req_reset),
            ("tokens-limit", self.INPUT_LIMIT + self.OUTPUT_LIMIT),
            ("tokens-remaining", in_left + out_left),
            ("tokens-reset", tok_reset),
            ("input-tokens-limit", self.INPUT_LIMIT),
            ("input-tokens-remaining", in_left),
            ("input-tokens-reset", tok_reset),
            ("output-tokens-limit", self.OUTPUT_LIMIT),
            ("output-tokens-remaining", out_left),
            ("output-tokens-reset", tok_reset),
        )
        return [(b"anthropic-ratelimit-" + k.encode(), str(v).encode()) for k, v in pairs]


def _thousands(n: int) -> int:
    # The real API rounds token "remaining" values to the nearest thousand.
    return max(0, int(math.floor(n / 1000 + 0.5)) * 1000)


def is_loopback(host: str | None) -> bool:
    """Whether a peer address is this machine (only such peers may use ``/_emulator/*``).

    ``None`` is a Unix-socket peer, local by construction.
    """
    if host is None:
        return True
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback
