"""`manage.py import_documents SET PATH...`: files, folders (recursively) and zip archives into a
document set, created when missing. Waits for extraction (a Celery worker must run) unless
--no-wait, shows progress on a terminal, prints one summary line last, exits 1 on any failure."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from documents import services
from documents.models import Document, DocumentSet


class _Bar:
    """A one-line progress bar, redrawn at most ten times a second, only on a terminal."""

    def __init__(self, stream: Any, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.last = 0.0
        self.drawn = False

    def draw(self, title: str, done: int, total: int, detail: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        total = max(total, done, 1)
        width = 28
        filled = int(width * done / total)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r{title:<10} [{bar}] {done:,}/{total:,}  {detail}\033[K", ending="")
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("")
            self.drawn = False


class Command(BaseCommand):
    help = "Import files, folders and .zip archives into a document set (created when missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("set_name", metavar="SET", help="the document set's name")
        parser.add_argument("paths", metavar="PATH", nargs="+", help="files, folders, .zip")
        parser.add_argument(
            "--csv-rows", action="store_true", help="one document per CSV row (not per file)"
        )
        parser.add_argument(
            "--owner", help="username owning a newly created set (default: the first superuser)"
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="return once the files are queued, without waiting for extraction",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=1800.0,
            help="seconds to wait for extraction (default 1800)",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar, even on a terminal"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        document_set = self._document_set(options["set_name"], options["owner"])
        bar = _Bar(self.stdout, self.stdout.isatty() and not options["no_progress"])

        incoming = list(services.incoming_from_paths(options["paths"]))

        def progress(report: services.ImportReport, force: bool = False) -> None:
            bar.draw(
                "Importing",
                report.processed,
                report.expected,
                f"new {report.imported:,} · duplicates {len(report.duplicates):,} "
                f"· refused {len(report.failures):,}",
                force=force,
            )

        report = services.documents_import(
            document_set=document_set,
            incoming=incoming,
            csv_rows=options["csv_rows"],
            on_progress=progress,
            expected=len(incoming),
        )
        progress(report, force=True)
        bar.finish()

        failures = [(f.name, f.reason) for f in report.failures]
        ready = pending = 0
        if report.document_ids and not options["no_wait"]:
            ready, pending, failed = self._wait(
                document_set, report.document_ids, options["timeout"], bar
            )
            failures.extend(failed)
        else:
            pending = report.imported

        for name, reason in failures:
            self.stdout.write(f"failed: {name}: {reason}")
        summary = self._summary(report, ready, pending, failures, options["no_wait"])
        self.stdout.write(summary)
        if failures or (pending and not options["no_wait"]):
            sys.exit(1)

    def _document_set(self, name: str, owner_name: str | None) -> DocumentSet:
        existing = DocumentSet.objects.filter(name=name).first()
        if existing is not None:
            return existing
        users = get_user_model().objects
        if owner_name:
            owner = users.filter(username=owner_name).first()
            if owner is None:
                raise CommandError(f"no user called {owner_name!r}")
        else:
            owner = users.filter(is_superuser=True, is_active=True).order_by("pk").first()
            if owner is None:
                raise CommandError("no superuser to own the new set: pass --owner USERNAME")
        document_set, created = services.documentset_get_or_create(name=name, owner=owner)
        if created:
            self.stdout.write(f"Created document set {name!r}.")
        return document_set

    def _wait(
        self, document_set: DocumentSet, ids: list[int], timeout: float, bar: _Bar
    ) -> tuple[int, int, list[tuple[str, str]]]:
        """Poll until every imported document is ready or failed (or the timeout)."""
        wanted = set(ids)
        if len(ids) <= 1000:
            window = Document.objects.filter(pk__in=ids)
        else:
            # An id range keeps the query small; another import into the same set meanwhile
            # may show in the progress counts, never in the results (filtered by `wanted`).
            window = Document.objects.filter(
                document_set=document_set, pk__gte=min(ids), pk__lte=max(ids)
            )
        deadline = time.monotonic() + timeout
        while True:
            counts = dict(window.values_list("status").annotate(n=Count("pk")).order_by())
            pending = counts.get(Document.Status.PENDING, 0)
            done = max(0, len(ids) - pending)
            bar.draw(
                "Extracting",
                done,
                len(ids),
                f"ready {counts.get(Document.Status.READY, 0):,} "
                f"· failed {counts.get(Document.Status.FAILED, 0):,}",
                force=pending == 0,
            )
            if pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        bar.finish()
        failed = [
            (name, reason)
            for pk, name, reason in window.filter(status=Document.Status.FAILED)
            .order_by("pk")
            .values_list("pk", "filename", "failure_reason")
            if pk in wanted
        ]
        ready = window.filter(status=Document.Status.READY).values_list("pk", flat=True)
        ready_count = sum(1 for pk in ready.iterator() if pk in wanted)
        pending_count = len(ids) - ready_count - len(failed)
        return ready_count, pending_count, failed

    @staticmethod
    def _summary(
        report: services.ImportReport,
        ready: int,
        pending: int,
        failures: list[tuple[str, str]],
        no_wait: bool,
    ) -> str:
        parts = [
            f"imported {report.imported if no_wait else ready:,}",
            f"duplicates {len(report.duplicates):,}",
        ]
        if pending:
            parts.append(
                f"queued {pending:,}" if no_wait else f"still pending {pending:,} (is a worker up?)"
            )
        failed = f"failed {len(failures):,}"
        if failures:
            shown = "; ".join(f"{name}: {reason}" for name, reason in failures[:3])
            more = f"; and {len(failures) - 3:,} more above" if len(failures) > 3 else ""
            failed += f" ({shown}{more})"
        parts.append(failed)
        return "Summary: " + ", ".join(parts)
