"""Job pages: who may see them (staff only; everyone else a 404), the estimate confirmation,
the results table, the result page, cancel and exports."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client
from django.urls import reverse

from claudeapp.testing.reference_data import ensure_reference_data
from documents.classification import services
from documents.classification.models import ClassificationJob
from tests.classification.conftest import LABELS, make_documents, start_job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def seeded(db):
    from claudeapp.claude import config

    ensure_reference_data()
    config.invalidate()


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def answered_job(document_set, staff_user):
    """A planned job whose lines came back: 2 invoices, 1 receipt, 1 invalid, 1 errored."""
    documents = make_documents(document_set, 5)
    job = start_job(document_set, staff_user, start=False)
    services.classification_job_plan(job_id=job.pk)
    batch = job.batches.get()
    d = [doc.pk for doc in documents]
    row = {"job_id": job.pk, "batch_id": batch.pk}
    services.results_upsert(
        [
            {**row, "document_id": d[0], "outcome": "succeeded", "label": "invoice",
             "confidence": 0.9, "rationale": "Asks for payment within 30 days."},
            {**row, "document_id": d[1], "outcome": "succeeded", "label": "receipt",
             "confidence": 0.8, "rationale": "=HYPERLINK(\"x\") paid in full"},
            {**row, "document_id": d[2], "outcome": "invalid",
             "raw_text": '{"label": "memo"}', "error": "schema violation at label"},
            {**row, "document_id": d[3], "outcome": "errored", "error": "api_error: boom"},
            {**row, "document_id": d[4], "outcome": "succeeded", "label": "invoice",
             "rationale": "An invoice total."},
        ]
    )  # fmt: skip
    batch.status = "ingested"
    batch.save()
    return job


def urls_for(job, document_id):
    return [
        reverse("documents:job-list"),
        reverse("documents:job-create"),
        reverse("documents:job-detail", args=[job.pk]),
        reverse("documents:job-status", args=[job.pk]),
        reverse("documents:job-results", args=[job.pk]),
        reverse("documents:job-result", args=[job.pk, document_id]),
        reverse("documents:job-export", args=[job.pk, "csv"]),
        reverse("documents:job-export", args=[job.pk, "jsonl"]),
    ]


def test_nobody_but_staff_sees_a_job_or_may_start_or_cancel_one(answered_job, user, document_set):
    # A member of the set who is not staff: every job page is a 404, never a 403.
    document_set.members.add(user)
    member = client_for(user)
    document_id = answered_job.results.first().document_id
    for url in urls_for(answered_job, document_id):
        assert member.get(url).status_code == 404, url
    cancel = reverse("documents:job-cancel", args=[answered_job.pk])
    assert member.post(cancel).status_code == 404
    create = reverse("documents:job-create")
    form = {
        "document_set": document_set.pk,
        "labels": "a: first\nb: second",
        "instructions": "x",
        "model_id": "claude-haiku-5-5",
        "mode": "batch",
        "action": "start",
    }
    assert member.post(create, form).status_code == 404
    assert ClassificationJob.objects.count() == 1
    answered_job.refresh_from_db()
    assert answered_job.status == "running"
    # Anonymous: the login page.
    response = Client().get(reverse("documents:job-detail", args=[answered_job.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_staff_see_every_page(answered_job, django_user_model):
    other_staff = django_user_model.objects.create_user("sam", password="x", is_staff=True)
    client = client_for(other_staff)
    document_id = answered_job.results.first().document_id
    for url in urls_for(answered_job, document_id):
        response = client.get(url, headers={"HX-Request": "true"})
        assert response.status_code == 200, url


def test_the_job_page_shows_progress_cost_labels_and_results(answered_job, staff_user):
    client = client_for(staff_user)
    page = client.get(answered_job.get_absolute_url()).content.decode()
    assert 'data-segment="succeeded"' in page and 'data-segment="invalid"' in page
    # Done counts every final outcome, failures included.
    assert "<strong data-progress-done>5</strong> of 5 documents done" in page
    assert 'id="label-chart-data"' in page
    data = page.split('id="label-chart-data" type="application/json">')[1].split("</script>")[0]
    assert json.loads(data) == {"labels": ["invoice", "receipt", "contract"], "counts": [2, 1, 0]}
    assert 'data-label-counts="[2, 1, 0]"' in page  # what the live panel brings along
    assert "Asks for payment within 30 days." in page
    assert 'nonce="' in page and "chart.umd.min.js" in page and "js/jobs.js" in page
    assert "style=" not in page  # CSP: no inline styles


def test_results_filter_by_label_outcome_and_search(answered_job, staff_user):
    client = client_for(staff_user)
    url = reverse("documents:job-results", args=[answered_job.pk])

    def rows(**query):
        html = client.get(url, query, headers={"HX-Request": "true"}).content.decode()
        return html.count("<tr data-outcome=")

    assert rows() == 5
    assert rows(label="invoice") == 2
    assert rows(outcome="invalid") == 1
    assert rows(q="payment within") == 1
    status = reverse("documents:job-status", args=[answered_job.pk])
    moved = client.get(status, {"done": "3"}, headers={"HX-Request": "true"})
    assert moved["HX-Trigger"] == "jobs:progress"  # the table reloads when results came in
    same = client.get(status, {"done": "5"}, headers={"HX-Request": "true"})
    assert "HX-Trigger" not in same
    assert rows(q="receipt-00001") == 1  # file names
    assert rows(label="nonsense") == 5  # an unknown label is no filter


def test_the_result_page_shows_the_rationale_and_the_raw_answer(answered_job, staff_user):
    client = client_for(staff_user)
    results = {r.outcome: r for r in answered_job.results.all()}
    page = client.get(
        reverse("documents:job-result", args=[answered_job.pk, results["invalid"].document_id])
    ).content.decode()
    assert "{&quot;label&quot;: &quot;memo&quot;}" in page
    assert "schema violation" in page
    invoice = answered_job.results.filter(label="invoice").order_by("document_id").first()
    page = client.get(
        reverse("documents:job-result", args=[answered_job.pk, invoice.document_id])
    ).content.decode()
    assert "Asks for payment within 30 days." in page
    assert invoice.document.text[:40] in page


def test_exports_stream_every_result_as_csv_and_jsonl(answered_job, staff_user):
    client = client_for(staff_user)
    response = client.get(reverse("documents:job-export", args=[answered_job.pk, "csv"]))
    assert response["Content-Disposition"] == (
        f'attachment; filename="job-{answered_job.pk}-results.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 5
    assert [r["outcome"] for r in rows].count("succeeded") == 3
    # A cell a spreadsheet would run as a formula is neutralised.
    assert any(r["rationale"].startswith("'=HYPERLINK") for r in rows)
    response = client.get(reverse("documents:job-export", args=[answered_job.pk, "jsonl"]))
    lines = [json.loads(x) for x in b"".join(response.streaming_content).decode().splitlines()]
    assert len(lines) == 5
    assert {line["label"] for line in lines if line["outcome"] == "succeeded"} == {
        "invoice",
        "receipt",
    }
    assert client.get(f"/sets/jobs/{answered_job.pk}/export.xml").status_code == 404


def test_starting_needs_the_estimate_of_exactly_these_inputs(document_set, staff_user):
    make_documents(document_set, 6)
    client = client_for(staff_user)
    url = reverse("documents:job-create")
    form = {
        "document_set": document_set.pk,
        "labels": "\n".join(f"{label['name']}: {label['description']}" for label in LABELS),
        "instructions": "Sort the mail.",
        "model_id": "claude-haiku-5-5",
        "extra_fields": ["rationale"],
        "mode": "batch",
    }
    page = client.post(url, {**form, "action": "estimate"}).content.decode()
    assert 'data-estimate="documents">6<' in page
    assert "at batch price" in page
    confirmation = page.split('name="confirmation" value="')[1].split('"')[0]
    # The labels changed after the estimate: the new estimate is shown, nothing starts.
    changed = {**form, "labels": form["labels"] + "\nmemo: an internal note"}
    page = client.post(url, {**changed, "action": "start", "confirmation": confirmation})
    assert page.status_code == 200
    assert ClassificationJob.objects.count() == 0
    response = client.post(url, {**form, "action": "start", "confirmation": confirmation})
    job = ClassificationJob.objects.get()
    assert response.status_code == 302 and response["Location"] == job.get_absolute_url()
    assert job.document_count == 6 and job.extra_fields == ["rationale"]
    assert job.created_by == staff_user


def test_the_form_explains_bad_labels(document_set, staff_user):
    make_documents(document_set, 2)
    client = client_for(staff_user)
    page = client.post(
        reverse("documents:job-create"),
        {
            "document_set": document_set.pk,
            "labels": "invoice\nreceipt: paid",
            "instructions": "x",
            "model_id": "claude-haiku-5-5",
            "mode": "batch",
            "action": "estimate",
        },
    ).content.decode()
    assert "Line 1: write the label, a colon, then its description." in page


def test_cancel_drops_batches_not_sent_yet(document_set, staff_user):
    make_documents(document_set, 4)
    job = start_job(document_set, staff_user, start=False)
    services.classification_job_plan(job_id=job.pk)
    client = client_for(staff_user)
    response = client.post(reverse("documents:job-cancel", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "canceling"
    assert job.batches.get().status == "canceled"
    assert set(job.results.values_list("outcome", flat=True)) == {"canceled"}
    # A second cancel changes nothing and says so.
    assert not services.classification_job_cancel(job=ClassificationJob.objects.get(pk=job.pk))
    services.classification_job_advance(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "canceled" and job.finished_at is not None
    assert not services.classification_job_cancel(job=job)
