"""Message Batches: the store behind ``/v1/messages/batches`` (reference section E).

A batch ends ``batch_seconds`` after it is created (the deadline is fixed at creation, so a
restarted emulator ends it on time). Until then every request counts as ``processing``, as the
real API documents. Its lines are produced when the batch ends: lazily, on the first access
after the deadline (or by the optional background worker), by calling the injected
``process(custom_id, params)`` for each request, so a bad request becomes an ``errored`` line
exactly as the model would reject it live. A cancel marks the share of requests that would have
been done by then as processed and the rest ``canceled``.

With ``state_dir`` every batch is a directory ``<state_dir>/batches/<id>/`` holding
``meta.json``, ``requests.jsonl`` and, once ended, ``results.jsonl``; a create is committed by
renaming a complete temporary directory, so a dropped connection never leaves half a batch.

All methods are blocking (processing 10,000 lines takes a while): the ASGI app calls them in a
thread (``asyncio.to_thread``), and its background worker (``start_worker``) ends batches on
time. A reset while a batch is being processed discards that batch's lines.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import string
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MAX_REQUESTS = 100_000
MAX_BODY_BYTES = 256 * 1024 * 1024  # checked by the route (Content-Length / body size)
EXPIRES_AFTER_SECONDS = 24 * 3600.0
CUSTOM_ID_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"
_CUSTOM_ID_RE = re.compile(CUSTOM_ID_PATTERN)
_ALPHABET = string.ascii_letters + string.digits
_RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")

# process(custom_id, params, context) -> result; line_fault(custom_id, params, context) ->
# "errored" | "expired" | None. ``context`` is what ``create`` was given for the batch (the
# emulator passes the create request's API version and its fault-matching headers).
ProcessFn = Callable[[str, dict, dict], dict]
LineFaultFn = Callable[[str, dict, dict], str | None]


class BatchError(Exception):
    """An API error for a batch route; the route turns it into the real error body.

    Same attribute names as ``emulator.errors.ApiError`` (status, error_type, message).
    """

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


def _invalid(message: str) -> BatchError:
    return BatchError(400, "invalid_request_error", message)


def _not_found(batch_id: str) -> BatchError:
    return BatchError(404, "not_found_error", f"No batch found with id '{batch_id}'.")


def rfc3339(timestamp: float) -> str:
    """``2024-09-24T18:37:24.100435Z``, the shape the real API sends."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def results_url(base_url: str, batch_id: str) -> str:
    """Where ``batches.results()`` fetches lines. The SDK follows an absolute URL to its host,
    so this must be the emulator's own base URL (e.g. ``str(request.base_url)``); an empty
    base gives a relative path, which the SDK joins onto its ``base_url``."""
    return f"{base_url.rstrip('/')}/v1/messages/batches/{batch_id}/results"


def new_batch_id() -> str:
    return "msgbatch_01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def new_request_id() -> str:
    return "req_011C" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def error_result(error_type: str, message: str) -> dict:
    """An ``errored`` result: its ``error`` is a full ErrorResponse (nested ``error.error``)."""
    return {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": new_request_id(),
        },
    }


def _no_model(custom_id: str, params: dict, context: dict) -> dict:
    return error_result("api_error", "The emulator has no model wired to process batches.")


@dataclass
class _Batch:
    id: str
    seq: int
    created_at: float
    ends_at: float
    total: int
    status: str = "in_progress"  # in_progress | canceling | ended
    cancel_initiated_at: float | None = None
    cancel_due_at: float | None = None
    processed_limit: int | None = None  # how many requests run before a cancel
    ended_at: float | None = None
    counts: dict[str, int] | None = None
    context: dict = field(default_factory=dict)
    # Memory mode only (state_dir None); with a state_dir these live in files.
    requests: list[tuple[str, dict]] | None = field(default=None, repr=False)
    results: list[bytes] | None = field(default=None, repr=False)

    def meta(self) -> dict:
        data = asdict(self)
        data.pop("requests")
        data.pop("results")
        return data

    def due_at(self) -> float:
        if self.status == "canceling" and self.cancel_due_at is not None:
            return min(self.cancel_due_at, self.ends_at)
        return self.ends_at


@dataclass
class BatchStats:
    created: int = 0
    ended: int = 0
    canceled: int = 0
    deleted: int = 0
    requests: dict[str, int] = field(
        default_factory=lambda: {"total": 0, **dict.fromkeys(_RESULT_TYPES, 0)}
    )


class BatchStore:
    """Create, retrieve, list, cancel, delete batches and serve their results."""

    def __init__(
        self,
        state_dir: str | None,
        batch_seconds: float,
        clock: Callable[[], float] = time.time,
        *,
        process: ProcessFn | None = None,
        line_fault: LineFaultFn | None = None,
    ) -> None:
        self.batch_seconds = float(batch_seconds)
        # Time from cancel to ``ended``; 0 means the cancel reply says ``canceling`` and the
        # next read says ``ended``.
        self.cancel_seconds = 0.0
        self.max_requests = MAX_REQUESTS
        self.max_body_bytes = MAX_BODY_BYTES
        self.clock = clock
        self.process: ProcessFn = process or _no_model
        self.line_fault: LineFaultFn = line_fault or (lambda custom_id, params, context: None)
        self.stats_data = BatchStats()
        self._lock = threading.RLock()
        self._batch_locks: dict[str, threading.Lock] = {}
        self._batches: dict[str, _Batch] = {}
        self._next_seq = 1
        self._root = Path(state_dir) / "batches" if state_dir else None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        if self._root is not None:
            self._root.mkdir(parents=True, exist_ok=True)
            self._load()

    # -- persistence -------------------------------------------------------------------

    def _dir(self, batch_id: str) -> Path:
        assert self._root is not None
        return self._root / batch_id

    def _load(self) -> None:
        assert self._root is not None
        for entry in self._root.iterdir():
            if entry.name.endswith(".tmp") or not entry.is_dir():
                # A create or delete interrupted half way never became visible: drop it.
                shutil.rmtree(entry, ignore_errors=True)
                continue
            try:
                meta = json.loads((entry / "meta.json").read_text())
                batch = _Batch(**meta)
            except (OSError, ValueError, TypeError):
                continue
            if batch.status == "ended" and not (entry / "results.jsonl").exists():
                # Crashed between writing results and meta: end it again from its requests.
                batch.status = "canceling" if batch.cancel_initiated_at else "in_progress"
            self._batches[batch.id] = batch
            self._next_seq = max(self._next_seq, batch.seq + 1)

    def _write_meta(self, batch: _Batch, directory: Path | None = None) -> None:
        directory = directory or self._dir(batch.id)
        tmp = directory / "meta.json.tmp"
        with open(tmp, "w") as handle:
            json.dump(batch.meta(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, directory / "meta.json")

    # -- validation --------------------------------------------------------------------

    def validate_requests(self, requests: Any) -> list[tuple[str, dict]]:
        """The real 400s for a create body's ``requests``; returns (custom_id, params)."""
        if not isinstance(requests, list):
            raise _invalid("requests: Input should be a valid list")
        if not requests:
            raise _invalid("requests: List should have at least 1 item after validation, not 0")
        if len(requests) > self.max_requests:
            raise _invalid(
                f"requests: List should have at most {self.max_requests} items after "
                f"validation, not {len(requests)}"
            )
        seen: set[str] = set()
        items: list[tuple[str, dict]] = []
        for i, item in enumerate(requests):
            where = f"requests.{i}"
            if not isinstance(item, dict):
                raise _invalid(f"{where}: Input should be a valid dictionary")
            if "custom_id" not in item:
                raise _invalid(f"{where}.custom_id: Field required")
            custom_id = item["custom_id"]
            if not isinstance(custom_id, str):
                raise _invalid(f"{where}.custom_id: Input should be a valid string")
            if not custom_id:
                raise _invalid(f"{where}.custom_id: String should have at least 1 character")
            if len(custom_id) > 64:
                raise _invalid(f"{where}.custom_id: String should have at most 64 characters")
            if not _CUSTOM_ID_RE.match(custom_id):
                raise _invalid(
                    f"{where}.custom_id: String should match pattern '{CUSTOM_ID_PATTERN}'"
                )
            if custom_id in seen:
                raise _invalid(
                    f"{where}.custom_id: Duplicate custom_id '{custom_id}'; each request in "
                    "a batch must have a unique custom_id."
                )
            seen.add(custom_id)
            if "params" not in item:
                raise _invalid(f"{where}.params: Field required")
            if not isinstance(item["params"], dict):
                raise _invalid(f"{where}.params: Input should be a valid dictionary")
            items.append((custom_id, item["params"]))
        return items

    # -- operations --------------------------------------------------------------------

    def create(self, requests: Any, *, base_url: str = "", context: dict | None = None) -> dict:
        """Validate and store a batch; returns the MessageBatch (``in_progress``).

        ``context`` (JSON-serialisable) is kept with the batch and handed to ``process`` and
        ``line_fault`` for each of its lines.

        The batch is fully committed (on disk with a state_dir) before this returns, so a
        ``drop_after_effect`` fault that drops the connection afterwards still leaves it.
        """
        items = self.validate_requests(requests)
        now = self.clock()
        with self._lock:
            batch = _Batch(
                id=new_batch_id(),
                seq=self._next_seq,
                created_at=now,
                ends_at=now + max(0.0, self.batch_seconds),
                total=len(items),
                context=dict(context or {}),
            )
            self._next_seq += 1
        if self._root is None:
            batch.requests = items
        else:
            tmp = self._root / f"{batch.id}.tmp"
            tmp.mkdir()
            with open(tmp / "requests.jsonl", "w") as handle:
                for custom_id, params in items:
                    handle.write(json.dumps([custom_id, params], separators=(",", ":")))
                    handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            self._write_meta(batch, tmp)
            os.rename(tmp, self._dir(batch.id))
        with self._lock:
            self._batches[batch.id] = batch
            self.stats_data.created += 1
            self.stats_data.requests["total"] += batch.total
            return self._render(batch, base_url)

    def retrieve(self, batch_id: str, *, base_url: str = "") -> dict:
        batch = self._get(batch_id)
        self._settle(batch)
        with self._lock:
            return self._render(batch, base_url)

    def list(
        self,
        limit: int = 20,
        after_id: str | None = None,
        before_id: str | None = None,
        *,
        base_url: str = "",
    ) -> dict:
        """A page, newest first, shaped for the SDK's ``SyncPage`` (``data``, ``has_more``,
        ``first_id``, ``last_id``). ``after_id`` pages towards older batches, ``before_id``
        towards newer ones (the SDK then pages on with ``first_id``)."""
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise _invalid("limit: Input should be a valid integer")
        if limit < 1:
            raise _invalid("limit: Input should be greater than or equal to 1")
        if limit > 1000:
            raise _invalid("limit: Input should be less than or equal to 1000")
        self.process_due()
        with self._lock:
            ordered = sorted(self._batches.values(), key=lambda b: b.seq, reverse=True)
            ids = [b.id for b in ordered]
            start, stop = 0, len(ordered)
            if after_id is not None:
                if after_id not in self._batches:
                    raise _not_found(after_id)
                start = ids.index(after_id) + 1
            if before_id is not None:
                if before_id not in self._batches:
                    raise _not_found(before_id)
                stop = ids.index(before_id)
            window = ordered[start:stop] if start < stop else []
            if before_id is not None and after_id is None:
                page = window[-limit:]  # the ones right before before_id
                has_more = len(window) > limit
            else:
                page = window[:limit]
                has_more = len(window) > limit
            data = [self._render(b, base_url) for b in page]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def cancel(self, batch_id: str, *, base_url: str = "") -> dict:
        batch = self._get(batch_id)
        self._settle(batch)
        with self._lock:
            if batch.status == "ended" and batch.cancel_initiated_at is None:
                raise _invalid(
                    f"Batch '{batch_id}' has already ended and can no longer be canceled."
                )
            if batch.status == "in_progress":
                now = self.clock()
                span = batch.ends_at - batch.created_at
                done = 1.0 if span <= 0 else min(1.0, max(0.0, (now - batch.created_at) / span))
                batch.status = "canceling"
                batch.cancel_initiated_at = now
                batch.cancel_due_at = now + max(0.0, self.cancel_seconds)
                batch.processed_limit = math.floor(batch.total * done)
                self.stats_data.canceled += 1
                if self._root is not None:
                    self._write_meta(batch)
            return self._render(batch, base_url)

    def delete(self, batch_id: str) -> dict:
        batch = self._get(batch_id)
        self._settle(batch)
        with self._lock:
            if batch.status != "ended":
                raise _invalid(
                    f"Batch '{batch_id}' cannot be deleted while it is {batch.status}; "
                    "cancel it and wait for processing to end first."
                )
            del self._batches[batch_id]
            self._batch_locks.pop(batch_id, None)
            self.stats_data.deleted += 1
        if self._root is not None:
            # Rename first so a crash mid-delete leaves a .tmp that _load discards.
            doomed = self._root / f"{batch_id}.deleting.tmp"
            os.rename(self._dir(batch_id), doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        return {"id": batch_id, "type": "message_batch_deleted"}

    def results_lines(self, batch_id: str) -> Iterator[bytes]:
        """The results JSONL, one line (ending in ``\\n``) at a time, in request order."""
        batch = self._get(batch_id)
        self._settle(batch)
        if batch.status != "ended":
            raise _invalid(
                f"Results for batch '{batch_id}' are not available until processing has "
                f"ended (processing_status: {batch.status})."
            )
        return self._iter_results(batch)

    def results_chunks(self, batch_id: str, max_bytes: int = 64 * 1024) -> Iterator[bytes]:
        """The same bytes as ``results_lines`` grouped into chunks of whole lines, which a
        streaming response sends with far fewer round trips for large batches."""
        lines = self.results_lines(batch_id)

        def chunks() -> Iterator[bytes]:
            buffer: list[bytes] = []
            size = 0
            for line in lines:
                buffer.append(line)
                size += len(line)
                if size >= max_bytes:
                    yield b"".join(buffer)
                    buffer, size = [], 0
            if buffer:
                yield b"".join(buffer)

        return chunks()

    def _iter_results(self, batch: _Batch) -> Iterator[bytes]:
        if self._root is None:
            yield from list(batch.results or [])
            return
        with open(self._dir(batch.id) / "results.jsonl", "rb") as handle:
            yield from handle

    # -- processing --------------------------------------------------------------------

    def process_due(self) -> int:
        """End every batch whose time has come; returns how many ended now."""
        now = self.clock()
        with self._lock:
            due = [b for b in self._batches.values() if b.status != "ended" and b.due_at() <= now]
        for batch in due:
            self._settle(batch)
        return len(due)

    def start_worker(self, interval: float = 0.05) -> None:
        """Optionally end batches in the background so polls rarely wait for processing."""
        if self._worker is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self.process_due()
                except Exception:  # noqa: S112 - the next tick retries; readers settle anyway
                    continue

        self._worker = threading.Thread(target=run, name="emulator-batches", daemon=True)
        self._worker.start()

    def stop_worker(self) -> None:
        if self._worker is not None:
            self._stop.set()
            self._worker.join(timeout=5)
            self._worker = None

    def _get(self, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._batches.get(batch_id)
        if batch is None:
            raise _not_found(batch_id)
        return batch

    def _settle(self, batch: _Batch) -> None:
        """End the batch if its time has come (processing its lines once, under its lock)."""
        if batch.status == "ended" or batch.due_at() > self.clock():
            return
        with self._lock:
            lock = self._batch_locks.setdefault(batch.id, threading.Lock())
        with lock:
            if batch.status == "ended" or batch.id not in self._batches:
                return
            self._finish(batch)

    def _requests_of(self, batch: _Batch) -> Iterator[tuple[str, dict]]:
        if self._root is None:
            yield from batch.requests or []
            return
        with open(self._dir(batch.id) / "requests.jsonl") as handle:
            for line in handle:
                custom_id, params = json.loads(line)
                yield custom_id, params

    def _result_for(
        self, batch: _Batch, index: int, custom_id: str, params: dict, cutoff: int, beyond: str
    ) -> dict:
        if index >= cutoff:
            return {"type": beyond}
        fault = self.line_fault(custom_id, params, batch.context)
        if fault == "expired":
            return {"type": "expired"}
        if fault == "errored":
            return error_result("api_error", "Internal server error")
        try:
            result = self.process(custom_id, params, batch.context)
        except Exception as exc:  # a crash in the model must not lose the whole batch
            return error_result("api_error", f"Internal server error ({type(exc).__name__})")
        if not isinstance(result, dict) or result.get("type") not in _RESULT_TYPES:
            return error_result("api_error", "Internal server error (bad result)")
        return result

    def _finish(self, batch: _Batch) -> None:
        # Requests past the cutoff never ran: canceled after a cancel, expired when the batch
        # would run past its 24 h expiry (only with an absurd batch_seconds).
        if batch.status == "canceling" and batch.processed_limit is not None:
            cutoff, beyond = batch.processed_limit, "canceled"
        elif batch.ends_at >= batch.created_at + EXPIRES_AFTER_SECONDS:
            cutoff, beyond = 0, "expired"
        else:
            cutoff, beyond = batch.total, "expired"
        counts = dict.fromkeys(_RESULT_TYPES, 0)
        memory: list[bytes] = []
        handle = None
        try:
            if self._root is not None:
                handle = open(self._dir(batch.id) / "results.jsonl.tmp", "wb")  # noqa: SIM115
            for index, (custom_id, params) in enumerate(self._requests_of(batch)):
                result = self._result_for(batch, index, custom_id, params, cutoff, beyond)
                counts[result["type"]] += 1
                line = json.dumps(
                    {"custom_id": custom_id, "result": result}, separators=(",", ":")
                ).encode()
                if handle is None:
                    memory.append(line + b"\n")
                else:
                    handle.write(line + b"\n")
            if handle is not None:
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            if self._gone(batch):
                return  # reset while it was processing: its files went with it
            raise
        finally:
            if handle is not None:
                handle.close()
        with self._lock:
            if self._gone(batch):
                return  # reset while it was processing: nothing to commit, nothing to count
            if self._root is not None:
                os.replace(
                    self._dir(batch.id) / "results.jsonl.tmp",
                    self._dir(batch.id) / "results.jsonl",
                )
            else:
                batch.results = memory
                batch.requests = None  # results are all that is needed from now on
            batch.counts = counts
            batch.ended_at = batch.due_at()
            batch.status = "ended"
            if self._root is not None:
                self._write_meta(batch)
            self.stats_data.ended += 1
            for kind, n in counts.items():
                self.stats_data.requests[kind] += n

    def _gone(self, batch: _Batch) -> bool:
        with self._lock:
            return self._batches.get(batch.id) is not batch

    # -- rendering and control ---------------------------------------------------------

    def _render(self, batch: _Batch, base_url: str) -> dict:
        if batch.status == "ended" and batch.counts is not None:
            counts = {"processing": 0, **batch.counts}
        else:
            counts = {"processing": batch.total, **dict.fromkeys(_RESULT_TYPES, 0)}
        ended = batch.status == "ended"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status,
            "request_counts": counts,
            "created_at": rfc3339(batch.created_at),
            "expires_at": rfc3339(batch.created_at + EXPIRES_AFTER_SECONDS),
            "ended_at": rfc3339(batch.ended_at) if ended and batch.ended_at is not None else None,
            "cancel_initiated_at": (
                rfc3339(batch.cancel_initiated_at) if batch.cancel_initiated_at else None
            ),
            "archived_at": None,
            "results_url": results_url(base_url, batch.id) if ended else None,
        }

    def stats(self) -> dict[str, Any]:
        """For ``/_emulator/stats`` -> ``"batches": {...}``."""
        with self._lock:
            data = self.stats_data
            return {
                "created": data.created,
                "ended": data.ended,
                "canceled": data.canceled,
                "deleted": data.deleted,
                "open": sum(1 for b in self._batches.values() if b.status != "ended"),
                "requests": dict(data.requests),
            }

    def reset(self) -> None:
        """``/_emulator/reset``: forget every batch (and its files) and the stats."""
        with self._lock:
            ids = list(self._batches)
            self._batches.clear()
            self._batch_locks.clear()
            self.stats_data = BatchStats()
        if self._root is not None:
            for batch_id in ids:
                shutil.rmtree(self._dir(batch_id), ignore_errors=True)
