"""Queued faults (the ``/_emulator/faults`` contract in ARCHITECTURE.md).

A fault matches a request by path (exact, or a prefix when it ends with ``*``), optionally by
model (the request's id or the table id it resolves to) and by one header. Faults are tried in
the order queued and the first that matches and fires is applied (one fault per request). It
fires ``count`` times (default 1), or, with ``probability``, on a seeded draw per matching
request (unlimited unless ``count`` is also given). The draws come from the emulator's
``--seed`` (re-seeded on reset) or from the fault's own ``seed``, so a run is reproducible.

Where each kind applies is the endpoint's business (see ``app.py``); ``take`` is told which
kinds the current request can carry, so e.g. a ``midstream_error`` waits for a streaming call.
A ``batch_line`` fault applies to one line of a batch as it is processed: it matches the path
``/v1/messages/batches`` or ``/v1/messages`` (so the default path works), the line's model and
the headers of the request that created the batch.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

from . import models_table

__all__ = ["KINDS", "Fault", "FaultStore", "parse_fault"]

KINDS = frozenset(
    {
        "status",
        "midstream_error",
        "disconnect",
        "early_end",
        "stall",
        "batch_line",
        "refusal",
        "invalid_output",
        "drop_after_effect",
    }
)
DEFAULT_STATUS = 500


@dataclass
class Fault:
    kind: str
    spec: dict  # everything as queued (error_type, retry_after, ms, category, ...)
    path: str = "/v1/messages"
    model: str | None = None
    header: tuple[str, str] | None = None
    remaining: int | None = 1  # None: unlimited (probability without count)
    probability: float | None = None
    rng: random.Random | None = None  # own RNG when the fault carries a seed
    applied: int = field(default=0)

    @property
    def after_tokens(self) -> int | None:
        value = self.spec.get("after_tokens")
        return None if value is None else int(value)

    def matches(
        self, path: str | tuple[str, ...], model: str | None, headers: dict[str, str]
    ) -> bool:
        """Whether the fault applies; ``path`` may be several paths (any one matching)."""
        paths = (path,) if isinstance(path, str) else path
        if self.path.endswith("*"):
            if not any(p.startswith(self.path[:-1]) for p in paths):
                return False
        elif self.path not in paths:
            return False
        if self.model is not None:
            if model is None:
                return False
            spec = models_table.lookup(model)
            if self.model != model and (spec is None or self.model not in (spec.id, *spec.aliases)):
                return False
        if self.header is not None:
            name, value = self.header
            if headers.get(name) != value:
                return False
        return True


def _int(spec: dict, key: str, *, minimum: int = 0) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{key}: must be an integer >= {minimum}")
    return value


def _num(spec: dict, key: str) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key}: must be a number >= 0")
    return float(value)


def parse_fault(spec: object) -> Fault:
    """A :class:`Fault` from its JSON form; ``ValueError`` names the bad field."""
    if not isinstance(spec, dict):
        raise ValueError("each fault must be an object")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(sorted(KINDS))}")
    path = spec.get("path", "/v1/messages")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError("path: must be a string starting with '/'")
    model = spec.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError("model: must be a string")
    header = spec.get("header")
    if header is not None:
        if not (
            isinstance(header, dict)
            and isinstance(header.get("name"), str)
            and isinstance(header.get("value"), str)
        ):
            raise ValueError("header: must be {name: str, value: str}")
        header = (header["name"].lower(), header["value"])
    count = _int(spec, "count", minimum=1)
    probability = _num(spec, "probability")
    if probability is not None and probability > 1:
        raise ValueError("probability: must be between 0 and 1")
    for key in ("after_tokens", "ms"):
        _int(spec, key)
    for key in ("retry_after", "retry_after_ms"):
        _num(spec, key)
    status = _int(spec, "status", minimum=100)
    if kind == "status" and status is not None and status < 400:
        raise ValueError("status: must be an error status (>= 400)")
    if kind == "stall" and spec.get("ms") is None:
        raise ValueError("ms: required for a stall")
    if kind == "batch_line" and spec.get("result", "errored") not in ("errored", "expired"):
        raise ValueError("result: must be 'errored' or 'expired'")
    seed = spec.get("seed")
    rng = random.Random(seed) if seed is not None else None
    remaining = count if count is not None else (None if probability is not None else 1)
    return Fault(kind, dict(spec), path, model, header, remaining, probability, rng)


class FaultStore:
    """The queue; thread-safe because part 2's batch worker may take faults from a thread."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)

    def add(self, specs: list) -> int:
        parsed = [parse_fault(s) for s in specs]  # all or nothing
        with self._lock:
            self._faults.extend(parsed)
        return len(parsed)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset(self, seed: int) -> None:
        with self._lock:
            self._faults.clear()
            self._rng = random.Random(seed)

    def pending(self) -> list[dict]:
        with self._lock:
            return [{**f.spec, "remaining": f.remaining} for f in self._faults]

    def __len__(self) -> int:
        return len(self._faults)

    def take(
        self,
        path: str | tuple[str, ...],
        model: str | None,
        headers: dict[str, str],
        kinds: frozenset[str] | set[str],
    ) -> Fault | None:
        """The first queued fault of one of ``kinds`` that matches and fires, used up once."""
        if not self._faults:  # the hot path: nothing queued, no lock
            return None
        with self._lock:
            for fault in self._faults:
                if fault.kind not in kinds or not fault.matches(path, model, headers):
                    continue
                if fault.probability is not None:
                    rng = fault.rng or self._rng
                    if rng.random() >= fault.probability:
                        continue
                fault.applied += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None
