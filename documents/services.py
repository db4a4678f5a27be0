"""Writes: document sets, importing files (browser, folders, zip archives), extraction.

Importing is the fast, synchronous half: read each file once (hashing it), refuse what is
clearly bad (too large, empty, hostile archives), skip duplicates, store the original under a
content-addressed name and insert rows in bulk. Extraction is the slow half, in Celery, in
batches of ids enqueued after the rows commit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import IO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage, storages
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from documents.chunking import ChunkSpan, chunk_and_count, with_pages
from documents.extraction import ExtractionError, extract
from documents.extraction.archives import (
    ZipCaps,
    human_size,
    is_skippable_member,
    member_problem,
    open_zip,
    safe_member_name,
)
from documents.extraction.detect import ZIP_MAGICS, classify_zip_names, detect
from documents.extraction.tabular import sniff_csv, split_csv_rows
from documents.extraction.text import clean_text, decode_text
from documents.models import Chunk, Document, DocumentSet

logger = logging.getLogger(__name__)

FILENAME_MAX = Document._meta.get_field("filename").max_length


# --- document sets ------------------------------------------------------------------------------


def documentset_create(
    *,
    name: str,
    owner: AbstractBaseUser,
    description: str = "",
    members: Iterable[AbstractBaseUser] = (),
    member_groups: Iterable[Group] = (),
) -> DocumentSet:
    """Create a set owned by `owner` with its members (users and/or groups)."""
    document_set = DocumentSet.objects.create(name=name, description=description, owner=owner)
    document_set.members.set(members)
    document_set.member_groups.set(member_groups)
    return document_set


def documentset_update(
    *,
    document_set: DocumentSet,
    name: str,
    description: str,
    members: Iterable[AbstractBaseUser],
    member_groups: Iterable[Group],
) -> DocumentSet:
    """Rename, redescribe and replace the members of a set."""
    document_set.name = name
    document_set.description = description
    document_set.save(update_fields=["name", "description", "updated_at"])
    document_set.members.set(members)
    document_set.member_groups.set(member_groups)
    return document_set


def documentset_get_or_create(*, name: str, owner: AbstractBaseUser) -> tuple[DocumentSet, bool]:
    """The set called `name`, created (owned by `owner`) when missing."""
    document_set, created = DocumentSet.objects.get_or_create(name=name, defaults={"owner": owner})
    return document_set, created


def documentset_delete(*, document_set: DocumentSet) -> None:
    """Delete a set, its documents and chunks, and (after commit) the stored originals."""
    names = list(
        Document.objects.filter(document_set=document_set)
        .exclude(file="")
        .values_list("file", flat=True)
    )
    document_set.delete()
    transaction.on_commit(partial(_delete_stored_files, names))


def _delete_stored_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete stored document file", extra={"file": name})


# --- what comes in ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Incoming:
    """A file offered for import, not read yet. `size` is what the file system, the archive or
    the upload says (it is checked again while reading)."""

    name: str
    size: int
    open: Callable[[], AbstractContextManager[IO[bytes]]]


@dataclass(frozen=True)
class Rejection:
    """A file refused before it became a document, and why."""

    name: str
    reason: str


@dataclass
class ImportReport:
    document_ids: list[int] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    failures: list[Rejection] = field(default_factory=list)
    # Files looked at so far, and how many are expected (archives add their entries).
    processed: int = 0
    expected: int = 0

    @property
    def imported(self) -> int:
        return len(self.document_ids)


def display_name(name: str) -> str:
    """Names are kept whole unless absurdly long; then the end (the file's own name) wins."""
    name = clean_text(name).replace("\n", " ").strip() or "unnamed"
    if len(name) > FILENAME_MAX:
        name = "…" + name[-(FILENAME_MAX - 1) :]
    return name


def incoming_from_paths(paths: Iterable[str | Path]) -> Iterator[Incoming | Rejection]:
    """Files named on a command line: files as they are, folders walked recursively (hidden
    files and folders skipped, symlinked folders not followed), in a stable order. Names are
    relative to the folder's parent, so `docs/a.txt` for a file under the folder `docs`."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _walk(str(path), path.resolve().name or "root")
        elif path.is_file():
            yield _incoming_path(str(path), path.name)
        elif path.exists():
            yield Rejection(str(raw), "not a regular file or folder")
        else:
            yield Rejection(str(raw), "no such file or folder")


def _walk(directory: str, name: str) -> Iterator[Incoming | Rejection]:
    """scandir, not pathlib: at tens of thousands of files the per-file cost shows."""
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        yield Rejection(name, f"could not read the folder: {exc.strerror or exc}")
        return
    folders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry)
            elif entry.is_file():
                yield Incoming(
                    name=f"{name}/{entry.name}",
                    size=entry.stat().st_size,
                    open=partial(open, entry.path, "rb"),
                )
        except OSError as exc:
            yield Rejection(f"{name}/{entry.name}", f"could not read: {exc.strerror or exc}")
    for entry in folders:
        yield from _walk(entry.path, f"{name}/{entry.name}")


def _incoming_path(path: str, name: str) -> Incoming | Rejection:
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return Rejection(name, f"could not read the file: {exc.strerror or exc}")
    return Incoming(name=name, size=size, open=partial(open, path, "rb"))


def incoming_from_uploads(files: Iterable[UploadedFile]) -> Iterator[Incoming | Rejection]:
    """Files from a browser upload (see `documents.uploads` for how oversize ones arrive)."""
    for uploaded in files:
        name = Path((uploaded.name or "unnamed").replace("\\", "/")).name or "unnamed"
        yield Incoming(name=name, size=uploaded.size or 0, open=partial(_reopen, uploaded))


class _Unclosing(AbstractContextManager):
    """Django closes uploaded files itself at the end of the request."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self.fileobj = fileobj

    def __enter__(self) -> IO[bytes]:
        return self.fileobj

    def __exit__(self, *exc_info: object) -> None:
        return None


def _reopen(uploaded: UploadedFile) -> AbstractContextManager[IO[bytes]]:
    if getattr(uploaded, "oversize", False):
        raise OSError("the upload was cut at the size limit")
    uploaded.seek(0)
    return _Unclosing(uploaded.file)


# --- importing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    name: str
    data: bytes


def _too_large(size: int, limit: int) -> str:
    return f"too large: {human_size(size)}; the limit is {human_size(limit)}"


def _entries(
    item: Incoming | Rejection, *, csv_rows: bool, limit: int, caps: ZipCaps, report: ImportReport
) -> Iterator[_Entry | Rejection]:
    """What one offered file turns into: one entry, the entries of an archive, the rows of a
    CSV (on request), or a rejection."""
    if isinstance(item, Rejection):
        yield item
        return
    name = display_name(item.name)
    if item.size == 0:
        yield Rejection(name, "empty file")
        return
    try:
        with item.open() as fileobj:
            head = fileobj.read(4)
            if head in ZIP_MAGICS:
                fileobj.seek(0)
                archive = _open_archive(fileobj, name, caps)
                if isinstance(archive, Rejection):
                    yield archive
                    return
                if archive is not None:
                    with archive:
                        yield from _archive_entries(archive, name, csv_rows, limit, caps, report)
                    return
                fileobj.seek(4)
            if item.size > limit:
                yield Rejection(name, _too_large(item.size, limit))
                return
            # Ask for the size we were told (read(n) allocates n bytes up front), then check
            # that nothing follows: a file that grew since is read on, up to the limit.
            data = head + fileobj.read(max(0, item.size - len(head)))
            more = fileobj.read(1)
            if more:
                data += more + fileobj.read(max(0, limit - len(data)))
    except OSError as exc:
        if item.size > limit:
            yield Rejection(name, _too_large(item.size, limit))
        else:
            yield Rejection(name, f"could not read the file: {exc.strerror or exc}")
        return
    if len(data) > limit:
        yield Rejection(name, _too_large(len(data), limit))
    elif not data:
        yield Rejection(name, "empty file")
    else:
        yield from _maybe_rows(_Entry(name, data), csv_rows, report)


def _open_archive(
    fileobj: IO[bytes], name: str, caps: ZipCaps
) -> zipfile.ZipFile | Rejection | None:
    """A plain zip archive to unpack, a rejection, or None for a zip that is a document
    (DOCX and friends go through as one file)."""
    try:
        archive = open_zip(fileobj, caps)
    except ExtractionError as exc:
        return Rejection(name, exc.reason)
    kind = classify_zip_names(
        set(archive.namelist()),
        archive.read("mimetype")[:100] if "mimetype" in archive.namelist() else b"",
    )
    if kind.family != "archive":
        archive.close()
        fileobj.seek(0)
        return None
    return archive


def _archive_entries(
    archive: zipfile.ZipFile,
    archive_name: str,
    csv_rows: bool,
    limit: int,
    caps: ZipCaps,
    report: ImportReport,
) -> Iterator[_Entry | Rejection]:
    members = [info for info in archive.infolist() if not is_skippable_member(info)]
    report.expected += max(0, len(members) - 1)
    for info in members:
        inner = safe_member_name(info.filename)
        name = display_name(f"{archive_name}/{inner or info.filename}")
        problem = member_problem(info, caps)
        if problem:
            yield Rejection(name, problem)
            continue
        if info.file_size == 0:
            yield Rejection(name, "empty file")
            continue
        if info.file_size > limit:
            yield Rejection(name, _too_large(info.file_size, limit))
            continue
        try:
            with archive.open(info) as member:
                # zipfile stops at the declared size and checks the CRC, so a lying header
                # cannot make this read more than the caps already allowed.
                data = member.read(limit + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
            yield Rejection(name, f"corrupt zip entry: {str(exc)[:120]}")
            continue
        yield from _maybe_rows(_Entry(name, data), csv_rows, report)


def _maybe_rows(entry: _Entry, csv_rows: bool, report: ImportReport) -> Iterator[_Entry]:
    """One document per CSV row when asked and the file is a table; else the file itself."""
    if not csv_rows or detect(entry.data).family != "text":
        yield entry
        return
    try:
        text, _ = decode_text(entry.data)
    except ExtractionError:
        yield entry  # extraction will say what is wrong with it
        return
    text = clean_text(text)
    delimiter = sniff_csv(text, filename=entry.name)
    if delimiter is None:
        yield entry
        return
    rows = 0
    for number, row in split_csv_rows(text, delimiter):
        rows += 1
        yield _Entry(display_name(f"{entry.name}/row-{number}.csv"), row)
    report.expected += max(0, rows - 1)


def documents_import(
    *,
    document_set: DocumentSet,
    incoming: Iterable[Incoming | Rejection],
    csv_rows: bool = False,
    on_progress: Callable[[ImportReport], None] | None = None,
    expected: int = 0,
) -> ImportReport:
    """Import files into `document_set`: each is read once and hashed, duplicates (same sha256
    in the set, or earlier in this import) skipped, bad ones refused with a reason, the rest
    stored and inserted in bulk as `pending` documents whose extraction is enqueued in batches
    when each insert commits. Safe to repeat: a second run finds only duplicates."""
    limit = settings.DOCUMENTS_MAX_FILE_SIZE
    caps = ZipCaps.from_settings()
    batch_size = max(1, settings.DOCUMENTS_IMPORT_BATCH_SIZE)
    max_batch_bytes = 64 * 1024 * 1024
    report = ImportReport(expected=expected)
    seen: set[str] = set()
    made_dirs: set[str] = set()
    pending: list[tuple[_Entry, str]] = []
    pending_bytes = 0
    for item in incoming:
        for entry in _entries(item, csv_rows=csv_rows, limit=limit, caps=caps, report=report):
            report.processed += 1
            if isinstance(entry, Rejection):
                report.failures.append(entry)
                continue
            digest = hashlib.sha256(entry.data).hexdigest()
            if digest in seen:
                report.duplicates.append(entry.name)
                continue
            seen.add(digest)
            pending.append((entry, digest))
            pending_bytes += len(entry.data)
            if len(pending) >= batch_size or pending_bytes >= max_batch_bytes:
                _insert_batch(document_set, pending, report, made_dirs)
                pending, pending_bytes = [], 0
            if on_progress is not None:
                on_progress(report)
        if on_progress is not None:
            on_progress(report)
    _insert_batch(document_set, pending, report, made_dirs)
    if on_progress is not None:
        on_progress(report)
    return report


_SUFFIX = re.compile(r"\.([A-Za-z0-9]{1,8})$")


def _storage_name(document_set_id: int, digest: str, filename: str) -> str:
    match = _SUFFIX.search(filename)
    suffix = f".{match.group(1).lower()}" if match else ""
    return f"documents/{document_set_id}/{digest[:2]}/{digest}{suffix}"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _store(name: str, data: bytes, made_dirs: set[str]) -> str:
    """Save an original; returns the name it was stored under.

    On the file system the name is ours alone (a set id and a sha256), so the file is written
    directly: Storage.save validates, probes and re-joins paths four times a file, which is
    most of an import's time at tens of thousands of small files. Other storages (S3...) go
    through save()."""
    storage = storages["default"]  # the instance itself, not the lazy proxy (hot loop)
    if not isinstance(storage, FileSystemStorage):
        return storage.save(name, ContentFile(data))
    path = os.path.join(storage.location, name)
    directory = os.path.dirname(path)
    if directory not in made_dirs:
        os.makedirs(directory, exist_ok=True)
        if storage.directory_permissions_mode is not None:
            os.chmod(directory, storage.directory_permissions_mode)
        made_dirs.add(directory)
    mode = storage.file_permissions_mode
    try:
        descriptor = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode
        )
    except FileExistsError:
        # Left over from a deleted document, or a write that died: never reuse it blindly.
        return storage.save(name, ContentFile(data))
    with os.fdopen(descriptor, "wb") as fileobj:
        fileobj.write(data)
    if mode is not None and mode & _UMASK:
        os.chmod(path, mode)  # the umask took bits the setting asks for
    return name


def _insert_batch(
    document_set: DocumentSet,
    pending: list[tuple[_Entry, str]],
    report: ImportReport,
    made_dirs: set[str],
) -> None:
    if not pending:
        return
    for attempt in range(2):
        saved: list[str] = []
        try:
            with transaction.atomic():
                existing = set(
                    Document.objects.filter(
                        document_set=document_set, sha256__in=[digest for _, digest in pending]
                    ).values_list("sha256", flat=True)
                )
                documents = []
                duplicates = []
                for entry, digest in pending:
                    if digest in existing:
                        duplicates.append(entry.name)
                        continue
                    stored = _store(
                        _storage_name(document_set.pk, digest, entry.name), entry.data, made_dirs
                    )
                    saved.append(stored)
                    documents.append(
                        Document(
                            document_set=document_set,
                            file=stored,
                            filename=entry.name,
                            size=len(entry.data),
                            sha256=digest,
                            status=Document.Status.PENDING,
                        )
                    )
                Document.objects.bulk_create(documents, batch_size=1000)
                ids = [document.pk for document in documents]
                transaction.on_commit(partial(enqueue_extraction, ids))
        except IntegrityError:
            # Another import inserted some of the same content meanwhile: look again, once.
            _delete_stored_files(saved)
            if attempt == 1:
                raise
            continue
        except BaseException:
            _delete_stored_files(saved)
            raise
        report.duplicates.extend(duplicates)
        report.document_ids.extend(ids)
        return


def enqueue_extraction(document_ids: Sequence[int]) -> None:
    """Send extraction tasks in batches of DOCUMENTS_EXTRACT_BATCH_SIZE ids (call after commit)."""
    from documents.tasks import extract_documents

    size = max(1, settings.DOCUMENTS_EXTRACT_BATCH_SIZE)
    ids = list(document_ids)
    for start in range(0, len(ids), size):
        extract_documents.delay(ids[start : start + size])


def documents_reextract(*, documents: QuerySet[Document]) -> int:
    """Put documents back to `pending` and extract them again (after a fix, or a new setting)."""
    ids = list(documents.exclude(file="").values_list("pk", flat=True))
    Document.objects.filter(pk__in=ids).update(status=Document.Status.PENDING, failure_reason="")
    transaction.on_commit(partial(enqueue_extraction, ids))
    return len(ids)


# --- extraction ---------------------------------------------------------------------------------


@dataclass
class _Result:
    document_id: int
    status: str
    media_type: str = ""
    text: str = ""
    failure_reason: str = ""
    metadata: dict = field(default_factory=dict)
    token_estimate: int = 0
    chunks: list[ChunkSpan] = field(default_factory=list)


@dataclass
class ExtractOutcome:
    ready: int = 0
    failed: int = 0
    skipped: int = 0
    requeued: int = 0


def _extract_one(document: Document) -> _Result:
    if not document.file:
        return _Result(document.pk, Document.Status.FAILED, failure_reason="no original file")
    try:
        with default_storage.open(document.file.name, "rb") as fileobj:
            data = fileobj.read()
    except OSError:
        return _Result(
            document.pk,
            Document.Status.FAILED,
            failure_reason="the original file is missing from storage",
        )
    try:
        extracted = extract(data, filename=document.filename)
    except ExtractionError as exc:
        return _Result(
            document.pk,
            Document.Status.FAILED,
            media_type=exc.media_type,
            failure_reason=exc.reason,
        )
    chunks, tokens = chunk_and_count(
        extracted.text,
        max_tokens=settings.DOCUMENTS_CHUNK_TOKENS,
        overlap_tokens=settings.DOCUMENTS_CHUNK_OVERLAP_TOKENS,
    )
    metadata = dict(extracted.metadata)
    if extracted.pages is not None:
        metadata["pages"] = extracted.pages
    return _Result(
        document.pk,
        Document.Status.READY,
        media_type=extracted.media_type,
        text=extracted.text,
        metadata=metadata,
        token_estimate=tokens,
        chunks=with_pages(chunks, extracted.pages),
    )


def documents_extract(*, document_ids: Sequence[int]) -> ExtractOutcome:
    """Extract and chunk the given documents that are still `pending`; the rest are skipped.

    Idempotent and safe beside a second runner: results are written only for rows still pending
    and not locked by another runner, old chunks replaced. Results are saved every few seconds,
    so a batch killed by its time limit loses little; the document it was working on is marked
    failed and the remaining ids are sent to a new task."""
    outcome = ExtractOutcome()
    documents = list(
        Document.objects.filter(pk__in=list(document_ids), status=Document.Status.PENDING)
        .only("pk", "file", "filename", "document_set_id")
        .order_by("pk")
    )
    outcome.skipped = len(set(document_ids)) - len(documents)
    results: list[_Result] = []
    held_chars = 0
    last_save = time.monotonic()
    for index, document in enumerate(documents):
        try:
            result = _extract_one(document)
        except SoftTimeLimitExceeded:
            results.append(
                _Result(
                    document.pk,
                    Document.Status.FAILED,
                    failure_reason="extraction took too long and was stopped",
                )
            )
            _save_results(results, outcome)
            remaining = [d.pk for d in documents[index + 1 :]]
            if remaining:
                outcome.requeued = len(remaining)
                transaction.on_commit(partial(enqueue_extraction, remaining))
            return outcome
        except Exception as exc:
            logger.exception("extraction crashed", extra={"document_id": document.pk})
            result = _Result(
                document.pk,
                Document.Status.FAILED,
                failure_reason=f"could not extract the text (internal error: {type(exc).__name__})",
            )
        results.append(result)
        held_chars += len(result.text)
        if held_chars > 8_000_000 or time.monotonic() - last_save > 5:
            _save_results(results, outcome)
            results, held_chars, last_save = [], 0, time.monotonic()
    _save_results(results, outcome)
    return outcome


_RESULT_FIELDS = [
    "status",
    "media_type",
    "text",
    "failure_reason",
    "metadata",
    "token_estimate",
    "chunk_count",
    "extracted_at",
]


def _update_documents(results: list[_Result], now: datetime) -> None:
    """One parameterised UPDATE run for many rows (Django's bulk_update builds a CASE per field
    per row, which costs more than the extraction of a small file)."""
    quote = connection.ops.quote_name
    fields = [Document._meta.get_field(name) for name in _RESULT_FIELDS]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    # Only names from the model's own metadata are formatted in; every value is a parameter.
    sql = (
        f"UPDATE {quote(Document._meta.db_table)} SET {assignments} "  # noqa: S608
        f"WHERE {quote(Document._meta.pk.column)} = %s"
    )
    rows = []
    for r in results:
        values = {
            "status": r.status,
            "media_type": r.media_type[:120],
            "text": r.text,
            "failure_reason": r.failure_reason,
            "metadata": r.metadata,
            "token_estimate": r.token_estimate,
            "chunk_count": len(r.chunks),
            "extracted_at": now,
        }
        rows.append(
            [field.get_db_prep_save(values[field.name], connection) for field in fields]
            + [r.document_id]
        )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


_CHUNK_FIELDS = [
    "document",
    "order",
    "start",
    "end",
    "text",
    "token_count",
    "page_start",
    "page_end",
]


def _insert_chunks(results: list[_Result]) -> None:
    """One parameterised INSERT run for every chunk (bulk_create builds a model instance and
    prepares every field of every row in Python first: tens of thousands of chunks)."""
    quote = connection.ops.quote_name
    columns = [Chunk._meta.get_field(name).column for name in _CHUNK_FIELDS]
    sql = (
        f"INSERT INTO {quote(Chunk._meta.db_table)} "  # noqa: S608 - names from the model
        f"({', '.join(quote(column) for column in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    rows = [
        (
            r.document_id,
            order,
            span.start,
            span.end,
            r.text[span.start : span.end],
            span.token_count,
            span.page_start,
            span.page_end,
        )
        for r in results
        for order, span in enumerate(r.chunks)
    ]
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)


def _save_results(results: list[_Result], outcome: ExtractOutcome) -> None:
    if not results:
        return
    with transaction.atomic():
        claimed = set(
            Document.objects.select_for_update(skip_locked=True)
            .filter(pk__in=[r.document_id for r in results], status=Document.Status.PENDING)
            .values_list("pk", flat=True)
        )
        offered = len(results)
        results = [r for r in results if r.document_id in claimed]
        outcome.skipped += offered - len(results)
        if not results:
            return
        Chunk.objects.filter(document_id__in=claimed).delete()
        _update_documents(results, timezone.now())
        _insert_chunks(results)
    for r in results:
        if r.status == Document.Status.READY:
            outcome.ready += 1
        else:
            outcome.failed += 1
