"""Importing (folders, files, zip archives, CSV rows) and extraction, through the services:
bad files fail alone with a reason, duplicates are skipped, everything is safe to repeat."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from documents import services
from documents.models import Chunk, Document, DocumentSet

pytestmark = pytest.mark.django_db


@pytest.fixture
def document_set(staff_user) -> DocumentSet:
    return services.documentset_create(name="Reference", owner=staff_user)


def import_paths(document_set, *paths, **options) -> services.ImportReport:
    return services.documents_import(
        document_set=document_set, incoming=services.incoming_from_paths(paths), **options
    )


def extract_pending(document_set) -> services.ExtractOutcome:
    ids = list(
        Document.objects.filter(
            document_set=document_set, status=Document.Status.PENDING
        ).values_list("pk", flat=True)
    )
    return services.documents_extract(document_ids=ids)


def failures(report) -> dict[str, str]:
    return {failure.name: failure.reason for failure in report.failures}


# --- folders and files --------------------------------------------------------------------------


def test_a_folder_is_imported_recursively_with_relative_names(document_set, folder):
    report = import_paths(document_set, folder)

    names = set(Document.objects.values_list("filename", flat=True))
    assert names == {
        "reference/statements/if.txt",
        "reference/statements/while.md",
        "reference/calls.html",
        "reference/numbers.csv",
        "reference/for.pdf",
        "reference/try.docx",
        "reference/broken.pdf",
    }
    assert report.imported == 7
    # Same bytes as if.txt, met later in the walk (a folder's files before its subfolders).
    assert report.duplicates == ["reference/statements/old/copy-of-if.txt"]
    assert report.failures == []
    document = Document.objects.get(filename="reference/statements/if.txt")
    data = (folder / "statements" / "if.txt").read_bytes()
    assert document.sha256 == hashlib.sha256(data).hexdigest()
    assert document.size == len(data)
    assert document.status == Document.Status.PENDING
    assert default_storage.open(document.file.name).read() == data


def test_extraction_makes_each_format_ready_and_the_broken_one_failed(document_set, folder):
    import_paths(document_set, folder)
    outcome = extract_pending(document_set)

    assert (outcome.ready, outcome.failed) == (6, 1)
    by_name = {d.filename.rsplit("/", 1)[-1]: d for d in Document.objects.all()}
    expected_types = {
        "if.txt": "text/plain",
        "while.md": "text/markdown",
        "calls.html": "text/html",
        "numbers.csv": "text/csv",
        "for.pdf": "application/pdf",
        "try.docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    }
    for name, media_type in expected_types.items():
        document = by_name[name]
        assert document.status == Document.Status.READY, (name, document.failure_reason)
        assert document.media_type == media_type
        assert document.text.strip()
        assert document.token_estimate > 0
        assert document.chunk_count == document.chunks.count() > 0
        assert document.extracted_at is not None
    broken = by_name["broken.pdf"]
    assert broken.status == Document.Status.FAILED
    assert broken.failure_reason.startswith("corrupt PDF")
    assert broken.media_type == "application/pdf"
    assert broken.chunks.count() == 0
    assert by_name["for.pdf"].metadata["page_count"] == 2


def test_every_chunk_maps_back_to_the_exact_text(document_set, folder, samples, tmp_path):
    long_text = "\n\n".join(samples.topic(name) for name in ("specialnames", "types", "import"))
    (tmp_path / "long.txt").write_text(long_text)
    import_paths(document_set, folder, tmp_path / "long.txt")
    extract_pending(document_set)

    documents = Document.objects.filter(status=Document.Status.READY)
    assert Chunk.objects.filter(document__in=documents).count() > 20
    for document in documents:
        chunks = list(document.chunks.order_by("order"))
        assert [chunk.order for chunk in chunks] == list(range(len(chunks)))
        for chunk in chunks:
            assert document.text[chunk.start : chunk.end] == chunk.text
    pdf = Document.objects.get(filename="reference/for.pdf")
    pages = pdf.metadata["pages"]
    assert [c.page_start for c in pdf.chunks.all()][0] == 1
    for chunk in pdf.chunks.all():
        start, _ = pages[chunk.page_start - 1]
        _, end = pages[chunk.page_end - 1]
        assert start <= chunk.start and chunk.end <= end


def test_reimporting_the_same_folder_imports_nothing_new(document_set, folder):
    first = import_paths(document_set, folder)
    second = import_paths(document_set, folder)

    assert first.imported == 7
    assert second.imported == 0
    assert len(second.duplicates) == 8
    assert Document.objects.count() == 7


def test_the_same_content_may_live_in_two_sets(document_set, folder, staff_user):
    other = services.documentset_create(name="Other", owner=staff_user)
    import_paths(document_set, folder)
    assert import_paths(other, folder).imported == 7


def test_extraction_is_idempotent(document_set, folder):
    import_paths(document_set, folder)
    ids = list(Document.objects.values_list("pk", flat=True))
    services.documents_extract(document_ids=ids)
    chunks_before = list(Chunk.objects.order_by("pk").values_list("document_id", "start", "end"))

    again = services.documents_extract(document_ids=ids)

    assert (again.ready, again.failed, again.skipped) == (0, 0, len(ids))
    assert list(Chunk.objects.order_by("pk").values_list("document_id", "start", "end")) == (
        chunks_before
    )


def test_reextracting_replaces_chunks_instead_of_adding(document_set, folder):
    import_paths(document_set, folder)
    extract_pending(document_set)
    count = Chunk.objects.count()

    queued = services.documents_reextract(documents=Document.objects.all())
    outcome = extract_pending(document_set)

    assert queued == 7
    assert outcome.ready == 6
    assert Chunk.objects.count() == count


def test_extraction_enqueues_after_commit_in_batches(
    document_set, folder, settings, django_capture_on_commit_callbacks, monkeypatch
):
    settings.DOCUMENTS_EXTRACT_BATCH_SIZE = 3
    sent: list[list[int]] = []
    monkeypatch.setattr(
        "documents.tasks.extract_documents.delay", lambda ids: sent.append(list(ids))
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        report = import_paths(document_set, folder)
    assert sent == []  # nothing before the rows commit
    for callback in callbacks:
        callback()
    assert [len(batch) for batch in sent] == [3, 3, 1]
    assert sorted(sum(sent, [])) == sorted(report.document_ids)


def test_missing_paths_fail_alone(document_set, folder, tmp_path):
    report = import_paths(document_set, tmp_path / "nope.txt", folder)
    assert failures(report) == {str(tmp_path / "nope.txt"): "no such file or folder"}
    assert report.imported == 7


def test_a_file_missing_from_storage_fails_extraction_with_a_reason(document_set, folder):
    import_paths(document_set, folder / "statements" / "if.txt")
    document = Document.objects.get()
    default_storage.delete(document.file.name)
    extract_pending(document_set)
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert document.failure_reason == "the original file is missing from storage"


# --- bad input at the door ----------------------------------------------------------------------


def test_files_over_the_size_limit_are_refused(document_set, tmp_path, settings, samples):
    settings.DOCUMENTS_MAX_FILE_SIZE = 1000
    (tmp_path / "big.txt").write_text(samples.topic("if") * 3)
    (tmp_path / "small.txt").write_text("A small note.")
    report = import_paths(document_set, tmp_path)

    name = f"{tmp_path.name}/big.txt"
    assert failures(report)[name].startswith("too large: 1.8 KB; the limit is")
    assert report.imported == 1


def test_empty_files_are_refused(document_set, tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "full.txt").write_text("Not empty.")
    report = import_paths(document_set, tmp_path)
    assert failures(report) == {f"{tmp_path.name}/empty.txt": "empty file"}
    assert report.imported == 1


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("junk.txt", bytes(range(256)) * 20, "unsupported type: binary data"),
        ("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(100), "unsupported type: a PNG image"),
        ("latin.txt", bytes(range(0x80, 0x100)) * 8, "undecodable text"),
        ("encrypted.pdf", None, "encrypted PDF"),
        ("blank.txt", b" \n \n", "no text found"),
    ],
)
def test_bad_content_fails_alone_at_extraction(document_set, tmp_path, samples, name, data, reason):
    if data is None:
        data = samples.pdf(["Top secret."], user_password="pw")
    (tmp_path / name).write_bytes(data)
    (tmp_path / "good.txt").write_text(samples.topic("if"))
    import_paths(document_set, tmp_path)
    extract_pending(document_set)

    bad = Document.objects.get(filename=f"{tmp_path.name}/{name}")
    good = Document.objects.get(filename=f"{tmp_path.name}/good.txt")
    assert bad.status == Document.Status.FAILED
    assert bad.failure_reason.startswith(reason)
    assert good.status == Document.Status.READY


# --- zip archives -------------------------------------------------------------------------------


def test_a_zip_archive_is_unpacked(document_set, tmp_path, samples):
    archive = samples.zip(
        {
            "notes/if.txt": samples.topic("if").encode(),
            "notes/for.pdf": samples.pdf([samples.topic("for")[:900]]),
            "__MACOSX/._if.txt": b"resource fork",
            "notes/": b"",
        }
    )
    (tmp_path / "bundle.zip").write_bytes(archive)
    report = import_paths(document_set, tmp_path / "bundle.zip")
    extract_pending(document_set)

    assert report.failures == []
    assert dict(Document.objects.values_list("filename", "status")) == {
        "bundle.zip/notes/if.txt": "ready",
        "bundle.zip/notes/for.pdf": "ready",
    }


def test_zip_slip_entries_are_refused_and_nothing_is_written_outside(
    document_set, tmp_path, samples, settings
):
    target = tmp_path / "target"
    target.mkdir()
    settings.MEDIA_ROOT = str(target / "media")
    hostile = {
        "../../evil.txt": b"escaped",
        "/tmp/absolute.txt": b"absolute",
        "safe/../../../climb.txt": b"climbed",
        "C:\\Windows\\win.txt": b"drive",
        "..\\..\\backslash.txt": b"backslash",
        "ok/good.txt": b"A good entry.",
    }
    (target / "slip.zip").write_bytes(samples.zip(hostile))
    report = import_paths(document_set, target / "slip.zip")

    refused = failures(report)
    assert len(refused) == 5
    assert all(reason.startswith("unsafe path in archive") for reason in refused.values())
    assert list(Document.objects.values_list("filename", flat=True)) == ["slip.zip/ok/good.txt"]
    for escaped in ("evil.txt", "climb.txt", "backslash.txt", "win.txt"):
        assert not list(tmp_path.rglob(escaped))
    stored = [p for p in (target / "media").rglob("*") if p.is_file()]
    assert len(stored) == 1
    assert stored[0].read_bytes() == b"A good entry."


def test_a_symlink_entry_is_refused(document_set, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("link-to-passwd")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("real.txt", "Real text.")
    (tmp_path / "links.zip").write_bytes(buffer.getvalue())
    report = import_paths(document_set, tmp_path / "links.zip")
    assert failures(report) == {
        "links.zip/link-to-passwd": "symbolic link in archive: not followed"
    }
    assert report.imported == 1


def test_a_zip_bomb_by_ratio_is_refused(document_set, tmp_path, samples):
    bomb = samples.zip({"zeros.txt": bytes(30 * 1024 * 1024)})
    assert len(bomb) < 100_000
    (tmp_path / "bomb.zip").write_bytes(bomb)
    (tmp_path / "fine.txt").write_text("Fine.")
    report = import_paths(document_set, tmp_path)

    reason = failures(report)[f"{tmp_path.name}/bomb.zip"]
    assert reason.startswith("zip bomb refused: compression ratio")
    assert report.imported == 1


def test_a_zip_over_the_total_size_cap_is_refused(document_set, tmp_path, settings, samples):
    settings.DOCUMENTS_ZIP_MAX_TOTAL_SIZE = 10_000
    entries = {f"{name}.txt": samples.topic(name).encode() for name in ("if", "for", "while")}
    entries["types.txt"] = samples.topic("types").encode()
    (tmp_path / "big.zip").write_bytes(samples.zip(entries, compression=zipfile.ZIP_STORED))
    report = import_paths(document_set, tmp_path / "big.zip")
    assert failures(report)["big.zip"].startswith("zip bomb refused: it expands to")
    assert report.imported == 0


def test_a_zip_with_too_many_entries_is_refused_before_parsing(
    document_set, tmp_path, settings, samples
):
    settings.DOCUMENTS_ZIP_MAX_ENTRIES = 5
    (tmp_path / "many.zip").write_bytes(samples.zip({f"{i}.txt": b"x" for i in range(6)}))
    report = import_paths(document_set, tmp_path / "many.zip")
    assert failures(report) == {"many.zip": "zip bomb refused: 6 entries; the limit is 5"}


def test_a_nested_bomb_is_not_unpacked(document_set, tmp_path, samples):
    inner = samples.zip({"zeros.txt": bytes(5 * 1024 * 1024)})
    (tmp_path / "outer.zip").write_bytes(samples.zip({"inner.zip": inner, "a.txt": b"Text A."}))
    import_paths(document_set, tmp_path / "outer.zip")
    extract_pending(document_set)
    nested = Document.objects.get(filename="outer.zip/inner.zip")
    assert nested.status == Document.Status.FAILED
    assert "zip archive inside an archive" in nested.failure_reason
    assert Document.objects.get(filename="outer.zip/a.txt").status == Document.Status.READY


def test_a_corrupt_zip_is_refused(document_set, tmp_path, samples):
    archive = samples.zip({"a.txt": b"Text." * 100, "b.txt": b"More." * 100})
    (tmp_path / "cut.zip").write_bytes(archive[: len(archive) // 2])
    report = import_paths(document_set, tmp_path / "cut.zip")
    assert failures(report)["cut.zip"].startswith("corrupt zip archive")


def test_duplicates_inside_an_archive_and_across_sources(document_set, tmp_path, samples):
    text = samples.topic("if").encode()
    (tmp_path / "a.zip").write_bytes(samples.zip({"one.txt": text, "two.txt": text}))
    (tmp_path / "if.txt").write_bytes(text)
    report = import_paths(document_set, tmp_path / "a.zip", tmp_path / "if.txt")
    assert report.imported == 1
    assert report.duplicates == ["a.zip/two.txt", "if.txt"]


# --- CSV, one document per row -------------------------------------------------------------------


def test_csv_rows_become_documents_on_request(document_set, tmp_path):
    (tmp_path / "people.csv").write_text(
        'name,role\nAda,"engineer, first"\nGrace,admiral\n\nAda,"engineer, first"\n'
    )
    report = import_paths(document_set, tmp_path / "people.csv", csv_rows=True)
    extract_pending(document_set)

    assert report.imported == 2
    assert report.duplicates == ["people.csv/row-4.csv"]  # the same row again
    texts = dict(Document.objects.values_list("filename", "text"))
    assert texts == {
        "people.csv/row-1.csv": "name: Ada\nrole: engineer, first",
        "people.csv/row-2.csv": "name: Grace\nrole: admiral",
    }


def test_without_the_option_a_csv_is_one_document(document_set, tmp_path):
    (tmp_path / "people.csv").write_text("name,role\nAda,engineer\nGrace,admiral\n")
    assert import_paths(document_set, tmp_path / "people.csv").imported == 1


# --- deleting a set ---------------------------------------------------------------------------


def test_deleting_a_set_removes_its_stored_files(
    document_set, folder, django_capture_on_commit_callbacks
):
    import_paths(document_set, folder)
    names = list(Document.objects.values_list("file", flat=True))
    assert all(default_storage.exists(name) for name in names)
    with django_capture_on_commit_callbacks(execute=True):
        services.documentset_delete(document_set=document_set)
    assert not any(default_storage.exists(name) for name in names)
    assert Document.objects.count() == 0


def test_names_are_kept_whole_unless_absurdly_long():
    assert services.display_name("a/b.txt") == "a/b.txt"
    long = "x" * 600 + "/end.txt"
    shortened = services.display_name(long)
    assert len(shortened) == 500
    assert shortened.endswith("/end.txt")
    assert Path(shortened).name == "end.txt"
