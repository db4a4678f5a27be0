"""Batch mode end to end: a real worker and beat, the emulator's Message Batches over HTTP."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db.models import Count

from claudeapp.models import ModelSpec, UsageRecord
from documents.classification import selectors, services
from documents.classification.services import SUBJECT_TYPE
from tests.classification.conftest import live, make_documents, start_job, wait_for, wait_job

LONG_INSTRUCTIONS = " ".join(f"Rule {i}: route the mail by what it asks of us." for i in range(600))


def ledger(job):
    return UsageRecord.objects.filter(subject_type=SUBJECT_TYPE, subject_id=str(job.pk))


def assert_booked_once(job):
    """Exactly one ledger row per (batch, custom_id), one for every line of every batch sent."""
    rows = ledger(job).filter(kind="batch_result")
    duplicates = rows.values("batch_id", "custom_id").annotate(n=Count("id")).filter(n__gt=1)
    assert not duplicates.exists()
    for batch in job.batches.exclude(api_batch_id=""):
        assert rows.filter(batch_id=batch.api_batch_id).count() == batch.request_count


def _rates(model_id, when):
    from claudeapp.claude.config import get_config

    return get_config().prices.rates_at(model_id, when)


def _tokens(row):
    from claudeapp.claude.pricing import Tokens

    return Tokens(
        input=row.input_tokens,
        output=row.output_tokens,
        cache_write_5m=row.cache_write_5m_tokens,
        cache_write_1h=row.cache_write_1h_tokens,
        cache_read=row.cache_read_tokens,
    )


@live
def test_a_batch_job_classifies_every_ready_document(jobs, emu, document_set, staff_user):
    from claudeapp.claude.pricing import compute_cost

    emu.config(batch_seconds=0.5)
    make_documents(document_set, 30)
    job = start_job(document_set, staff_user)
    wait_job(job, jobs)
    assert job.status == "completed", job.error
    assert emu.stats()["batches"]["created"] == 1
    batch = job.batches.get()
    assert (batch.status, batch.lines_ingested, batch.request_count) == ("ingested", 30, 30)
    results = list(job.results.select_related("document"))
    assert len(results) == 30
    for result in results:
        assert result.outcome == "succeeded"
        assert result.label == result.document.filename.split("-")[0]
        assert 0 <= result.confidence <= 1 and result.rationale
        assert result.answered_by_id == batch.pk
    assert selectors.classification_label_counts(job=job) == [
        ("invoice", 10),
        ("receipt", 10),
        ("contract", 10),
    ]
    assert_booked_once(job)
    rows = ledger(job).filter(kind="batch_result")
    rates = _rates(job.model_id, job.created_at)
    for row in rows:
        assert row.custom_id == f"{job.pk}-{row.custom_id.split('-')[1]}"
        assert row.cost_usd == compute_cost(_tokens(row), rates, batch=True)
    assert selectors.classification_job_cost(job=job) == sum(r.cost_usd for r in rows)
    assert ledger(job).filter(kind="batch_create", outcome="ok").count() == 1


@live
def test_errored_lines_are_retried_once_and_expired_ones_resubmitted(
    jobs, emu, document_set, staff_user
):
    emu.config(batch_seconds=0.3)
    make_documents(document_set, 10)
    emu.faults(
        [
            {"kind": "batch_line", "path": "/v1/messages*", "result": "errored", "count": 3},
            {"kind": "batch_line", "path": "/v1/messages*", "result": "expired", "count": 2},
        ]
    )
    job = start_job(document_set, staff_user)
    wait_job(job, jobs)
    assert job.status == "completed", job.error
    kinds = dict(job.batches.values_list("kind").annotate(n=Count("id")))
    assert kinds == {"initial": 1, "retry": 1, "resubmit": 1}
    assert emu.stats()["batches"]["created"] == 3
    assert job.batches.get(kind="retry").request_count == 3
    assert job.batches.get(kind="resubmit").request_count == 2
    assert job.results.filter(outcome="succeeded").count() == 10
    assert job.results.filter(errored_count=1).count() == 3
    assert job.results.filter(expired_count=1).count() == 2
    assert_booked_once(job)


@live
def test_a_line_that_errors_twice_stays_errored(jobs, emu, document_set, staff_user):
    emu.config(batch_seconds=0.3)
    make_documents(document_set, 10)
    # Every line of the first batch and three of its retry fail.
    emu.faults([{"kind": "batch_line", "path": "/v1/messages*", "result": "errored", "count": 13}])
    job = start_job(document_set, staff_user)
    wait_job(job, jobs)
    assert job.status == "completed"
    assert emu.stats()["batches"]["created"] == 2  # retried once, never a third time
    assert job.results.filter(outcome="succeeded").count() == 7
    errored = job.results.filter(outcome="errored")
    assert errored.count() == 3
    assert all(r.errored_count == 2 and r.error for r in errored)
    progress = selectors.classification_job_progress(job=job)
    assert (progress.done, progress.counts["errored"]) == (10, 3)
    assert_booked_once(job)


@live
def test_canceling_a_job_cancels_its_batch_and_keeps_what_ran(jobs, emu, document_set, staff_user):
    emu.config(batch_seconds=4)
    make_documents(document_set, 40)
    job = start_job(document_set, staff_user)
    wait_for(lambda: job.batches.filter(status="submitted").exists(), timeout=20)
    wait_for(lambda: emu.stats()["batches"]["open"] == 1, timeout=5)
    import time

    time.sleep(1.0)  # let a share of the batch "run" before the cancel
    assert services.classification_job_cancel(job=job)
    wait_job(job, jobs)
    assert job.status == "canceled"
    assert emu.stats()["batches"]["canceled"] == 1
    assert emu.stats()["batches"]["created"] == 1  # nothing was sent again
    outcomes = dict(job.results.values_list("outcome").annotate(n=Count("id")))
    assert outcomes.get("canceled", 0) > 0
    assert set(outcomes) <= {"succeeded", "canceled"}
    assert sum(outcomes.values()) == 40
    assert_booked_once(job)


@live
def test_a_lowered_limit_splits_the_job_into_several_batches(
    jobs, emu, document_set, staff_user, settings
):
    emu.config(batch_seconds=0.3)
    make_documents(document_set, 20)
    job = start_job(document_set, staff_user, start=False)
    # Planning reads the limits where it runs: here, with the lowered setting.
    settings.CLASSIFICATION_BATCH_MAX_REQUESTS = 7
    services.classification_job_plan(job_id=job.pk)
    assert list(job.batches.values_list("request_count", flat=True)) == [7, 7, 6]
    wait_job(job, jobs)
    assert job.status == "completed"
    assert emu.stats()["batches"]["created"] == 3
    assert job.results.filter(outcome="succeeded").count() == 20
    assert len(set(job.results.values_list("answered_by", flat=True))) == 3
    assert_booked_once(job)


@live
def test_batch_lines_cost_half_and_read_the_cached_instructions(
    jobs, emu, document_set, staff_user
):
    from claudeapp.claude.pricing import compute_cost

    emu.config(batch_seconds=0.3)
    make_documents(document_set, 8)
    job = start_job(document_set, staff_user, instructions=LONG_INSTRUCTIONS)
    wait_job(job, jobs)
    assert job.status == "completed"
    rows = list(ledger(job).filter(kind="batch_result", outcome="ok"))
    assert len(rows) == 8
    rates = _rates(job.model_id, job.created_at)
    for row in rows:
        full = compute_cost(_tokens(row), rates)
        assert row.service_tier == "batch"
        assert row.cost_usd == compute_cost(_tokens(row), rates, batch=True)
        assert row.cost_usd == pytest.approx(full / 2, abs=Decimal("1e-12"))
    # The instructions sit under a 1h breakpoint: written once, then read by the other lines.
    assert sum(r.cache_write_1h_tokens for r in rows) > 2000
    assert sum(1 for r in rows if r.cache_read_tokens > 2000) >= 7
    cost = selectors.classification_job_cost(job=job)
    assert Decimal("0.25") * job.estimated_cost_usd < cost < 4 * job.estimated_cost_usd


def _use_strategy(strategy: str) -> str:
    """Point the registry at a model that answers structured output the given way."""
    from claudeapp.claude import config

    if strategy == "tool":
        ModelSpec.objects.filter(model_id="claude-haiku-5-5").update(structured_outputs=False)
        model = "claude-haiku-5-5"
    elif strategy == "prompt":
        ModelSpec.objects.filter(model_id="claude-sonnet-5-5").update(
            structured_outputs=False, forced_tool_choice=False
        )
        model = "claude-sonnet-5-5"
    else:
        model = "claude-haiku-5-5"
    config.invalidate()
    import time

    time.sleep(0.6)  # the worker's copy of the registry lives 0.5 s in these tests
    return model


@live
@pytest.mark.parametrize("strategy", ["native", "tool"])
def test_structured_output_through_the_models_strategy(
    strategy, jobs, emu, document_set, staff_user
):
    emu.config(batch_seconds=0.3)
    model = _use_strategy(strategy)
    make_documents(document_set, 6)
    job = start_job(document_set, staff_user, model_id=model, extra_fields=["key_phrases"])
    wait_job(job, jobs)
    assert job.status == "completed"
    for result in job.results.select_related("document"):
        assert result.outcome == "succeeded", (result.error, result.raw_text)
        assert result.label == result.document.filename.split("-")[0]
        assert isinstance(result.key_phrases, list)


@live
def test_the_prompt_strategy_parses_json_and_stores_prose_as_invalid(
    jobs, emu, document_set, staff_user
):
    emu.config(batch_seconds=0.3)
    model = _use_strategy("prompt")
    make_documents(document_set, 4)
    answer = json.dumps({"label": "receipt", "confidence": 0.7, "rationale": "paid"})
    fenced = start_job(
        document_set, staff_user, model_id=model,
        instructions=f"Sort the mail.\nEMULATOR-OBEY: ```json {answer} ```",
    )  # fmt: skip
    prose = start_job(document_set, staff_user, model_id=model)
    wait_job(fenced, jobs)
    wait_job(prose, jobs)
    assert set(fenced.results.values_list("outcome", "label")) == {("succeeded", "receipt")}
    # Whatever the model says without JSON is kept as it came, never coerced into a label.
    for result in prose.results.all():
        assert result.outcome == "invalid" and result.label == ""
        assert result.raw_text and "not JSON" in result.error


@live
def test_output_that_breaks_the_schema_is_stored_as_invalid(jobs, emu, document_set, staff_user):
    emu.config(batch_seconds=0.3)
    make_documents(document_set, 5)
    bad = json.dumps({"label": "memo", "confidence": 3, "rationale": "?"})
    job = start_job(document_set, staff_user, instructions=f"Sort.\nEMULATOR-OBEY: {bad}")
    wait_job(job, jobs)
    assert job.status == "completed"
    for result in job.results.all():
        assert result.outcome == "invalid"
        assert json.loads(result.raw_text) == json.loads(bad)
        assert "schema violation" in result.error
    progress = selectors.classification_job_progress(job=job)
    assert progress.counts["invalid"] == 5
