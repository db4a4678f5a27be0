"""Classification tests run the real thing: the emulator over HTTP behind the door, Celery
workers and a beat process of their own (on a queue of their own), PostgreSQL or SQLite.

Worker settings are environment variables (the worker is another process): `JOB_ENV` makes the
pipeline fast (short ticks, polls and windows); tests that need other limits start their own
worker with `jobs_stack(**env)`.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from claudeapp.testing.processes import CeleryWorker, ChildProcess, child_env
from claudeapp.testing.reference_data import ensure_reference_data

# Live tests commit their data; the seeded registry and prices come back (same keys) each time.
live = pytest.mark.django_db(transaction=True, serialized_rollback=True)

JOB_ENV = {
    "CLASSIFICATION_TICK_SECONDS": "0.25",
    "CLASSIFICATION_POLL_MIN_SECONDS": "0.2",
    "CLASSIFICATION_POLL_MAX_SECONDS": "0.6",
    "CLASSIFICATION_POLL_BACKOFF": "1.3",
    "CLASSIFICATION_RECHECK_SECONDS": "10",
    "CLASSIFICATION_SUBMIT_STALE_SECONDS": "4",
    "CLASSIFICATION_CLOCK_SKEW_SECONDS": "5",
    "CLASSIFICATION_LIST_LAG_SECONDS": "0.5",
    "CLASSIFICATION_INGEST_CHUNK": "500",
    # The session worker outlives tests that rewrite the registry: keep its copy short-lived.
    "CLAUDE_CONFIG_CACHE_SECONDS": "0.5",
    "CLAUDE_RETRY_BASE_SECONDS": "0.01",
    "CLAUDE_RETRY_MAX_DELAY_SECONDS": "0.05",
    "CLAUDE_USER_RPM": "0",
    "CLAUDE_GLOBAL_RPM": "0",
    "LOG_LEVEL": "INFO",
}

TOPICS = {
    "invoice": "Invoice number {i}. Amount due within 30 days; payment terms net 30; bill to "
    "Acme Ltd. Please pay the invoice total to our bank account.",
    "receipt": "Receipt {i}. Thank you for your purchase: paid in full by card, change given, "
    "receipt printed at the store till. Keep this receipt for returns.",
    "contract": "Contract {i}. This agreement between the parties sets out the terms; each party "
    "shall sign the contract; governing law and termination clauses apply.",
}
LABELS = [
    {"name": "invoice", "description": "a bill asking to be paid: amount due, payment terms"},
    {"name": "receipt", "description": "proof of a purchase already paid: paid, store, card"},
    {"name": "contract", "description": "an agreement between parties: terms, sign, clauses"},
]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


# --- the emulator -------------------------------------------------------------------------------


def _clear_door_keys() -> None:
    from claudeapp.redis import get_redis, key

    client = get_redis()
    names = list(client.scan_iter(match=key("claude", "*"), count=500))
    if names:
        client.delete(*names)


@pytest.fixture
def emu(emulator, settings):
    """The session emulator, reset (faults, stats, batches, config) before and after the test;
    the door's Redis state and config copy cleared; short door backoffs in this process too."""
    from claudeapp.claude import config

    emulator.reset()
    emulator.restore_config()
    config.invalidate()
    _clear_door_keys()
    ensure_reference_data()
    settings.CLAUDE_RETRY = {**settings.CLAUDE_RETRY, "base_delay": 0.01, "max_delay": 0.05}
    yield emulator
    emulator.reset()
    emulator.restore_config()
    config.invalidate()
    _clear_door_keys()


# --- worker and beat ----------------------------------------------------------------------------


class CeleryBeat(ChildProcess):
    """`celery beat` with its schedule file and pid file in a directory of its own."""

    name = "celery-beat"

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.directory = tempfile.mkdtemp(prefix="claudeapp-beat-")

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "claudeapp", "beat",
            "-s", str(Path(self.directory) / "schedule"),
            "--pidfile", str(Path(self.directory) / "beat.pid"),
            "--max-interval", "1", "-l", "INFO",
        ]  # fmt: skip

    def ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError("beat exited")
            if "beat: Starting" in self.log_tail(200):
                return
            time.sleep(0.1)
        raise TimeoutError("beat did not start")


class JobsStack:
    """A queue with its workers and beat; tests point the app's enqueues at it."""

    def __init__(self, env: dict[str, str], concurrency: int = 2) -> None:
        self.queue = f"jobs-{uuid.uuid4().hex[:8]}"
        self.env = {**JOB_ENV, **env, "CELERY_QUEUE": self.queue}
        self.env["CLASSIFICATION_QUEUE"] = self.queue
        self.concurrency = concurrency
        self.worker_env: dict[str, str] = {}  # for the workers only (beat does not need it)
        self.workers: list[CeleryWorker] = []
        self.spares: list[CeleryWorker] = []
        self._starting: dict[str, threading.Thread] = {}
        self.beat: CeleryBeat | None = None

    def start_worker(self, *, background: bool = False, **env: str) -> CeleryWorker:
        """A worker on the stack's queue; `background`: return at once (tasks wait in the queue
        meanwhile), so its cold start overlaps the test's own setup."""
        worker = self._worker(**env)
        self._start(worker, background)
        self.workers.append(worker)
        return worker

    def start_spare(self) -> CeleryWorker:
        """A worker started ahead (in the background), on a queue of its own: `take_over`
        points it at the stack's queue at once, a crash test's replacement without a cold
        start."""
        worker = self._worker(CELERY_QUEUE=f"{self.queue}-spare")
        self._start(worker, background=True)
        self.spares.append(worker)
        return worker

    def take_over(self, spare: CeleryWorker) -> CeleryWorker:
        from claudeapp.celery import app

        self.ready(spare)
        app.control.add_consumer(self.queue, destination=[spare.node], reply=True, timeout=10)
        self.spares.remove(spare)
        self.workers.append(spare)
        return spare

    def kill(self, worker: CeleryWorker | None = None) -> None:
        """SIGKILL to a worker's whole process group (the main worker by default)."""
        worker = worker or self.worker
        self.ready(worker)
        worker.kill()

    def ready(self, worker: CeleryWorker) -> None:
        starting = self._starting.pop(worker.node, None)
        if starting is not None:
            starting.join()

    def _worker(self, **env: str) -> CeleryWorker:
        return CeleryWorker(
            env=child_env(**{**self.env, **self.worker_env, **env}), concurrency=self.concurrency
        )

    def _start(self, worker: CeleryWorker, background: bool) -> None:
        if not background:
            worker.start()
            return
        thread = threading.Thread(target=worker.start, name=f"start-{worker.node}", daemon=True)
        thread.start()
        self._starting[worker.node] = thread

    def start_beat(self) -> CeleryBeat:
        self.beat = CeleryBeat(env=child_env(**self.env))
        self.beat.start()
        return self.beat

    def start(self) -> JobsStack:
        self.start_worker()
        self.start_beat()
        return self

    @property
    def worker(self) -> CeleryWorker:
        return self.workers[-1]

    def logs(self) -> str:
        parts = [f"--- {w.log_path}\n{w.log_tail(80)}" for w in self.workers]
        if self.beat:
            parts.append(f"--- beat\n{self.beat.log_tail(20)}")
        return "\n".join(parts)

    def stop(self) -> None:
        for worker in self.workers + self.spares:
            self.ready(worker)
            worker.stop()
        if self.beat is not None:
            self.beat.stop()


# Beat's tick handles every job in the database, so two beats at once would hand one test's
# work to another stack's workers (with other limits, or beyond a crash test's kill). One beat
# runs at a time: the shared stack is stopped while a test or module runs a stack of its own,
# and started again by the next test that wants it.
_shared: JobsStack | None = None


def stop_shared_stack() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None


@pytest.fixture(scope="session")
def _shared_stack_cleanup(django_db_setup) -> Iterator[None]:
    yield
    stop_shared_stack()  # before the test database is dropped


@pytest.fixture(scope="session")
def stop_shared() -> Callable[[], None]:
    """`stop_shared_stack` of the conftest pytest loaded: test modules that import helpers
    from `tests.classification.conftest` get a second copy of it, with a `_shared` of its own."""
    return stop_shared_stack


@pytest.fixture
def jobs(_shared_stack_cleanup, django_db_setup, emu, settings) -> JobsStack:
    """The shared classification worker and beat, with this process's enqueues sent to their
    queue."""
    global _shared
    if _shared is None:
        _shared = JobsStack({}).start()
    settings.CLASSIFICATION_QUEUE = _shared.queue
    return _shared


@pytest.fixture
def jobs_stack(django_db_setup, settings, emu) -> Iterator[Callable[..., JobsStack]]:
    """A worker + beat of this test's own, with extra environment (limits)."""
    stacks: list[JobsStack] = []

    def start(concurrency: int = 2, *, run: bool = True, **env: str) -> JobsStack:
        stop_shared_stack()
        stack = JobsStack(env, concurrency=concurrency)
        if run:
            stack.start()
        stacks.append(stack)
        settings.CLASSIFICATION_QUEUE = stack.queue
        return stack

    yield start
    for stack in stacks:
        stack.stop()


# --- data ---------------------------------------------------------------------------------------


def make_documents(document_set, count: int, *, topics: list[str] | None = None, start: int = 0):
    """`count` ready documents whose text is about one of the labels (round robin), in bulk."""
    from claudeapp.claude import estimate_tokens
    from documents.models import Document

    names = topics or list(TOPICS)
    rows = []
    for i in range(start, start + count):
        topic = names[i % len(names)]
        text = TOPICS[topic].format(i=i)
        rows.append(
            Document(
                document_set=document_set,
                filename=f"{topic}-{i:05d}.txt",
                media_type="text/plain",
                size=len(text),
                sha256=hashlib.sha256(f"{document_set.pk}:{i}:{text}".encode()).hexdigest(),
                text=text,
                token_estimate=estimate_tokens(text),
                status=Document.Status.READY,
            )
        )
    return Document.objects.bulk_create(rows, batch_size=2000)


@pytest.fixture
def document_set(staff_user):
    from documents.models import DocumentSet

    return DocumentSet.objects.create(name=f"Mail {uuid.uuid4().hex[:6]}", owner=staff_user)


def start_job(document_set, user, *, start: bool = True, **kwargs):
    from documents.classification import services

    options = {
        "labels": LABELS,
        "instructions": "Sort incoming business mail so the right team handles it.",
        "extra_fields": ["confidence", "rationale"],
    }
    options.update(kwargs)
    return services.classification_job_create(
        document_set=document_set, created_by=user, start=start, **options
    )


def wait_job(job, stack: JobsStack | None = None, timeout: float = 60.0):
    """Wait until the job leaves its open states; show the workers' logs if it does not."""

    def finished():
        job.refresh_from_db()
        return not job.is_open

    try:
        wait_for(finished, timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(
            f"job {job.pk} still {job.status}\n{stack.logs() if stack else ''}"
        ) from None
    return job
