"""`manage.py import_documents` against a real Celery worker: extraction in bulk, the summary
line, the exit code, idempotent re-runs, and the extraction task being safe to run twice."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command

from documents import services
from documents.models import Chunk, Document, DocumentSet
from documents.tasks import extract_documents

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("celery_worker")]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_import(*args: str, stdout: io.StringIO | None = None) -> tuple[int, list[str]]:
    out = stdout or io.StringIO()
    try:
        call_command("import_documents", *args, stdout=out, timeout=120)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, out.getvalue().splitlines()


def wait_until_extracted(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while Document.objects.filter(status=Document.Status.PENDING).exists():
        assert time.monotonic() < deadline, "extraction did not finish"
        time.sleep(0.1)


def test_it_imports_a_folder_waits_for_extraction_and_summarises_last(
    folder, admin_user, staff_user
):
    code, lines = run_import("Python reference", str(folder))

    assert code == 1, "a failed file makes the exit code non-zero"
    assert lines[0] == "Created document set 'Python reference'."
    assert lines[-1].startswith(
        "Summary: imported 6, duplicates 1, failed 1 (reference/broken.pdf: corrupt PDF"
    )
    assert lines[-2].startswith("failed: reference/broken.pdf: corrupt PDF")
    document_set = DocumentSet.objects.get(name="Python reference")
    assert document_set.owner == admin_user
    statuses = dict(document_set.documents.values_list("filename", "status"))
    assert statuses.pop("reference/broken.pdf") == "failed"
    assert set(statuses.values()) == {"ready"}
    for chunk in Chunk.objects.select_related("document"):
        assert chunk.document.text[chunk.start : chunk.end] == chunk.text


def test_running_it_twice_imports_nothing_new(folder, admin_user):
    run_import("Reference", str(folder))
    code, lines = run_import("Reference", str(folder))
    assert code == 0
    assert lines[-1] == "Summary: imported 0, duplicates 8, failed 0"
    assert Document.objects.count() == 7


def test_it_uses_an_existing_set_and_reports_refusals_with_reasons(tmp_path, staff_user, samples):
    services.documentset_create(name="Existing", owner=staff_user)
    (tmp_path / "ok.txt").write_text(samples.topic("while"))
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bomb.zip").write_bytes(samples.zip({"zeros.txt": bytes(20 * 1024 * 1024)}))
    code, lines = run_import("Existing", str(tmp_path), str(tmp_path / "missing.pdf"))

    assert code == 1
    assert "Created document set" not in "\n".join(lines)
    summary = lines[-1]
    assert summary.startswith("Summary: imported 1, duplicates 0, failed 3 (")
    failures = sorted(line for line in lines if line.startswith("failed: "))
    assert failures[0] == f"failed: {tmp_path / 'missing.pdf'}: no such file or folder"
    assert failures[1].startswith(
        f"failed: {tmp_path.name}/bomb.zip: zip bomb refused: compression ratio 1,0"
    )
    assert failures[1].endswith(":1; the limit is 100:1")
    assert failures[2] == f"failed: {tmp_path.name}/empty.txt: empty file"


def test_zip_archives_and_csv_rows_through_the_command(tmp_path, staff_user, samples):
    (tmp_path / "bundle.zip").write_bytes(
        samples.zip(
            {
                "people.csv": b"name,role\nAda,engineer\nGrace,admiral\n",
                "docs/try.docx": samples.docx(samples.topic("try").split("\n\n")[:5]),
            }
        )
    )
    code, lines = run_import(
        "Bundle", str(tmp_path / "bundle.zip"), "--csv-rows", "--owner", staff_user.username
    )
    assert code == 0, lines
    assert lines[-1] == "Summary: imported 3, duplicates 0, failed 0"
    assert dict(Document.objects.values_list("filename", "status")) == {
        "bundle.zip/people.csv/row-1.csv": "ready",
        "bundle.zip/people.csv/row-2.csv": "ready",
        "bundle.zip/docs/try.docx": "ready",
    }


def test_no_wait_returns_once_queued(folder, staff_user):
    code, lines = run_import("Quick", str(folder), "--no-wait", "--owner", staff_user.username)
    assert code == 0
    assert lines[-1] == "Summary: imported 7, duplicates 1, queued 7, failed 0"
    wait_until_extracted()


def test_a_terminal_gets_a_progress_bar(folder, staff_user):
    terminal = Terminal()
    run_import("Bar", str(folder), "--owner", staff_user.username, stdout=terminal)
    output = terminal.getvalue()
    assert "\rImporting  [" in output and "8/8" in output
    assert "\rExtracting [############################] 7/7" in output
    assert output.splitlines()[-1].startswith("Summary: ")


def test_without_a_terminal_there_is_no_bar(folder, staff_user):
    _, lines = run_import("Plain", str(folder), "--owner", staff_user.username)
    assert not any("[" in line and "#" in line for line in lines)


def test_an_unknown_owner_is_an_error(folder):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no user called 'ghost'"):
        call_command("import_documents", "New", str(folder), "--owner", "ghost")


def test_the_extraction_task_is_safe_to_run_twice_at_once(folder, staff_user):
    document_set = services.documentset_create(name="Twice", owner=staff_user)
    report = services.documents_import(
        document_set=document_set, incoming=services.incoming_from_paths([folder])
    )
    # The import's own tasks were enqueued on commit; send the same batch twice more.
    extract_documents.delay(report.document_ids)
    extract_documents.delay(report.document_ids)
    wait_until_extracted()
    time.sleep(1.0)  # let any late runner finish its (empty) pass

    for document in Document.objects.filter(status=Document.Status.READY):
        orders = list(document.chunks.values_list("order", flat=True))
        assert orders == list(range(document.chunk_count)), document.filename
    assert Document.objects.filter(status=Document.Status.READY).count() == 6
