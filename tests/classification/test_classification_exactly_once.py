"""Exactly once under crashes: `kill -9` of the worker before the create call, between the call
and storing the batch id (the emulator's `drop_after_effect`), and mid-ingestion; an emulator
restart with a batch open; and two batches for one row. Each 5,000-document job must end with
the emulator's `batches.created` equal to the batches planned (plus any extra, canceled and
never ingested), one ledger row per (batch, custom_id) and one final result per document."""

from __future__ import annotations

import datetime as dt
import signal
import time

import pytest
from django.utils import timezone

from claudeapp.models import UsageRecord
from claudeapp.testing.ports import free_port
from documents.classification import services
from documents.classification.models import ClassificationBatch
from documents.classification.prompts import JobPrompt
from tests.classification.conftest import (
    JobsStack,
    live,
    make_documents,
    start_job,
    wait_for,
    wait_job,
)
from tests.classification.test_classification_batches import assert_booked_once, ledger

DOCUMENTS = 5000
CRASH_ENV = {"CLASSIFICATION_BATCH_MAX_REQUESTS": "2500", "CELERY_VISIBILITY_TIMEOUT": "3"}

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def crash_beat(django_db_setup, django_db_blocker, stop_shared):
    """One queue and beat for this module's tests; each test brings its own workers."""
    stop_shared()  # one beat at a time (see conftest)
    with django_db_blocker.unblock():
        stack = JobsStack({})
        stack.start_beat()
    yield stack
    stack.stop()


@pytest.fixture
def jobs_stack(crash_beat, emu, settings):
    """`jobs_stack(**env)`: a worker of this test's own (one process, so a kill takes its task
    with it) on the module's queue; `stack.start_spare()` readies its replacement."""
    settings.CLASSIFICATION_QUEUE = crash_beat.queue

    def start(*, run: bool = True, **env: str) -> JobsStack:
        crash_beat.concurrency = 1
        crash_beat.worker_env = {**CRASH_ENV, **env}
        if run:
            crash_beat.start_worker(background=True)
        return crash_beat

    yield start
    for worker in crash_beat.workers + crash_beat.spares:
        crash_beat.kill(worker)
    crash_beat.workers.clear()
    crash_beat.spares.clear()
    crash_beat.worker_env = {}


def assert_exactly_once(job, created: int, *, documents: int = DOCUMENTS, planned: int = 2):
    job.refresh_from_db()
    assert job.status == "completed", job.error
    rows = job.batches.exclude(kind="extra")
    extras = job.batches.filter(kind="extra")
    assert rows.filter(kind="initial").count() == planned
    assert created == rows.count() + extras.count()
    assert set(rows.values_list("status", flat=True)) == {"ingested"}
    assert set(extras.values_list("status", flat=True)) <= {"discarded"}
    assert_booked_once(job)
    results = job.results
    assert results.count() == documents
    assert results.filter(outcome="succeeded").count() == documents
    assert not results.filter(answered_by__kind="extra").exists()
    assert results.values("document").distinct().count() == documents


@live
def test_a_worker_killed_before_its_create_call_lands_sends_the_batch_once(
    jobs_stack, emu, document_set, staff_user
):
    emu.config(batch_seconds=1.0)
    stack = jobs_stack()
    spare = stack.start_spare()
    make_documents(document_set, DOCUMENTS)
    # The first create is held at the emulator's door; the worker dies while it waits.
    emu.faults([{"kind": "stall", "path": "/v1/messages/batches", "ms": 3000, "count": 1}])
    job = start_job(document_set, staff_user)
    wait_for(
        lambda: not emu.pending_faults() and job.batches.filter(status="submitting").exists(),
        timeout=60,
        interval=0.02,
    )
    time.sleep(0.2)
    stack.kill()
    killed = time.monotonic()
    assert job.batches.filter(status="submitting", api_batch_id="").exists()
    stack.take_over(spare)
    wait_job(job, stack, timeout=120)
    # Past the end of the stall: a create the emulator still made would be counted by now.
    time.sleep(max(0.0, killed + 3.5 - time.monotonic()))
    assert_exactly_once(job, emu.stats()["batches"]["created"])
    assert job.batches.filter(submit_attempts__gte=2).exists()


@live
def test_a_lost_create_answer_is_found_confirmed_and_adopted(
    jobs_stack, emu, document_set, staff_user
):
    emu.config(batch_seconds=1.0)
    stack = jobs_stack()
    spare = stack.start_spare()
    make_documents(document_set, DOCUMENTS)
    # The batch is created, then the connection drops before the answer; then the worker dies.
    emu.faults([{"kind": "drop_after_effect", "path": "/v1/messages/batches", "count": 1}])
    job = start_job(document_set, staff_user)
    wait_for(
        lambda: emu.stats()["batches"]["created"] >= 1 and not emu.pending_faults(),
        timeout=60,
        interval=0.02,
    )
    stack.kill()
    stack.take_over(spare)
    wait_job(job, stack, timeout=120)
    assert_exactly_once(job, emu.stats()["batches"]["created"])
    # At least one batch id never reached us in a create answer: it was found and adopted.
    answered = set(
        ledger(job).filter(kind="batch_create", outcome="ok").values_list("batch_id", flat=True)
    )
    adopted = set(job.batches.values_list("api_batch_id", flat=True)) - answered
    assert adopted


@live
def test_a_worker_killed_mid_ingestion_resumes_where_it_stopped(
    jobs_stack, emu, document_set, staff_user
):
    emu.config(batch_seconds=1.0)
    stack = jobs_stack(CLASSIFICATION_INGEST_CHUNK="100")
    spare = stack.start_spare()
    make_documents(document_set, DOCUMENTS)
    job = start_job(document_set, staff_user)
    batch = wait_for(
        lambda: job.batches.filter(status="ended", lines_ingested__gt=0).first(),
        timeout=90,
        interval=0.01,
    )
    stack.kill()
    at_kill = ClassificationBatch.objects.get(pk=batch.pk)
    assert 0 < at_kill.lines_ingested < at_kill.request_count
    stored = job.results.filter(answered_by=batch).count()
    assert stored >= at_kill.lines_ingested  # the counter never runs ahead of the rows
    stack.take_over(spare)
    wait_job(job, stack, timeout=120)
    assert_exactly_once(job, emu.stats()["batches"]["created"])


@live
def test_an_emulator_restart_with_batches_open_loses_nothing(
    jobs_stack, emu, document_set, staff_user, tmp_path
):
    from emulator.testing import EmulatorProcess

    private = EmulatorProcess(
        args=("--ttft-ms", "0", "--tokens-per-second", "0", "--batch-seconds", "3",
              "--state-dir", str(tmp_path / "emulator-state")),
        port=free_port(),
    ).start()  # fmt: skip
    try:
        stack = jobs_stack(ANTHROPIC_BASE_URL=private.url)
        make_documents(document_set, DOCUMENTS)
        job = start_job(document_set, staff_user)
        wait_for(lambda: job.batches.filter(status="submitted").count() == 2, timeout=60)
        created_before = private.stats()["batches"]["created"]
        private.stop(sig=signal.SIGKILL)
        time.sleep(1.5)  # polls meet a closed port meanwhile
        private.start()
        wait_job(job, stack, timeout=120)
        created_after = private.stats()["batches"]["created"]  # counted since the restart
    finally:
        private.stop()
    assert created_before == 2
    assert_exactly_once(job, created_before + created_after)


@live
def test_a_second_batch_for_the_same_row_is_canceled_and_never_ingested(
    jobs_stack, emu, document_set, staff_user, settings
):
    from claudeapp.claude import door

    emu.config(batch_seconds=10.0)  # both still running when the recovery finds them
    settings.CLASSIFICATION_POLL_MIN_SECONDS = 0.2
    stack = jobs_stack()
    make_documents(document_set, 300)
    job = start_job(document_set, staff_user, start=False)
    queue = settings.CLASSIFICATION_QUEUE
    settings.CLASSIFICATION_QUEUE = "nobody-listens"  # the plan's own submit task is lost
    services.classification_job_plan(job_id=job.pk)
    batch = job.batches.get()
    requests = services._batch_requests(batch, JobPrompt.for_job(job))
    # A worker claimed the row and its create landed twice (a request retried after its first
    # answer was lost); then it died without storing either id. Beat leaves the row to us.
    now = timezone.now()
    ClassificationBatch.objects.filter(pk=batch.pk).update(
        status="submitting", submit_attempts=1, window_start=now - dt.timedelta(seconds=5),
        window_end=now + dt.timedelta(seconds=2), next_check_at=now + dt.timedelta(minutes=5),
    )  # fmt: skip
    ctx = services._ctx(job)
    first = door.batch_create(ctx, requests, model=job.model_id)
    second = door.batch_create(ctx, requests, model=job.model_id)
    settings.CLASSIFICATION_QUEUE = queue
    wait_for(lambda: timezone.now() > now + dt.timedelta(seconds=2.1), timeout=5)
    services.classification_batch_recover(batch_id=batch.pk)
    # Both were found running: the newer is canceled at once, the older waits to be confirmed.
    batch.refresh_from_db()
    assert (batch.status, batch.candidates) == ("confirming", [first.id])
    assert emu.stats()["batches"]["canceled"] == 1
    wait_job(job, stack, timeout=60)
    batch.refresh_from_db()
    assert batch.api_batch_id == first.id
    extra = job.batches.get(kind="extra")
    assert (extra.api_batch_id, extra.status, extra.duplicate_of_id) == (
        second.id,
        "discarded",
        batch.pk,
    )
    stats = emu.stats()["batches"]
    assert stats["canceled"] == 1
    assert_exactly_once(job, stats["created"], documents=300, planned=1)
    # What the extra ran before its cancel was booked (the API charges it), stored nowhere.
    booked = UsageRecord.objects.filter(batch_id=second.id, kind="batch_result")
    assert booked.count() == 300
    assert booked.filter(outcome="canceled").exists()
