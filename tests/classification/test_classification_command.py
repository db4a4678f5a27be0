"""`manage.py classify`: the contract in ARCHITECTURE.md, against a real worker and the emulator."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from claudeapp.testing.reference_data import ensure_reference_data
from documents.classification.models import ClassificationJob
from tests.classification.conftest import LABELS, live, make_documents


@live
def test_classify_waits_with_progress_and_prints_one_summary_line_last(
    jobs, emu, document_set, tmp_path
):
    emu.config(batch_seconds=0.3)
    make_documents(document_set, 9)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({label["name"]: label["description"] for label in LABELS}))
    out = io.StringIO()
    call_command(
        "classify", document_set.name, "--labels-file", str(labels),
        "--instructions", "Sort the mail.", "--fields", "rationale,confidence", "--wait",
        stdout=out,
    )  # fmt: skip
    job = ClassificationJob.objects.get()
    lines = out.getvalue().strip().splitlines()
    assert lines[0].startswith("Estimate: 9 documents, ")
    assert "at batch price (claude-haiku-5-5)" in lines[0]
    assert any(line.startswith(f"Job {job.pk} [") for line in lines[1:-1])  # the progress bar
    assert lines[-1].startswith(f"Job {job.pk} completed: 9 documents, 9 classified, 0 invalid")
    assert job.extra_fields == ["confidence", "rationale"]
    assert job.created_by == document_set.owner
    assert set(job.results.values_list("label", flat=True)) == {"invoice", "receipt", "contract"}


@live
def test_classify_realtime_with_inline_labels(jobs, document_set):
    make_documents(document_set, 4, topics=["invoice", "receipt"])
    out = io.StringIO()
    call_command(
        "classify", document_set.name, "--labels", "invoice=a bill to pay,receipt=proof of payment",
        "--instructions", "Sort the mail.", "--mode", "realtime", "--wait", stdout=out,
    )  # fmt: skip
    job = ClassificationJob.objects.get()
    assert job.mode == "realtime"
    assert job.labels == [
        {"name": "invoice", "description": "a bill to pay"},
        {"name": "receipt", "description": "proof of payment"},
    ]
    assert (
        out.getvalue()
        .strip()
        .splitlines()[-1]
        .startswith(f"Job {job.pk} completed: 4 documents, 4 classified")
    )


@pytest.mark.django_db
def test_classify_refuses_bad_input_without_starting_anything(document_set, tmp_path):
    ensure_reference_data()
    make_documents(document_set, 2)
    with pytest.raises(CommandError, match="no document set named 'nope'"):
        call_command("classify", "nope", "--labels", "a,b", "--instructions", "x")
    with pytest.raises(CommandError, match="between 2 and 50"):
        call_command("classify", document_set.name, "--labels", "a", "--instructions", "x")
    bad = tmp_path / "labels.json"
    bad.write_text("[1, 2]")
    with pytest.raises(CommandError, match="expected a JSON object"):
        call_command(
            "classify", document_set.name, "--labels-file", str(bad), "--instructions", "x"
        )
    out = io.StringIO()
    call_command(
        "classify", document_set.name, "--labels", "a,b", "--instructions", "x", stdout=out
    )
    job = ClassificationJob.objects.get()
    assert out.getvalue().strip().splitlines()[-1] == (
        f"Job {job.pk} started: 2 documents in batch mode; follow it at "
        f"{job.get_absolute_url()} or with --wait."
    )
