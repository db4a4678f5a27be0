"""`manage.py classify SET (--labels a,b,c | --labels-file FILE.json) --instructions TEXT
[--model ID] [--mode batch|realtime] [--wait]`: the job page's "new job", from a terminal.

Shows the estimate, starts the job (a worker and beat do the work), and with --wait follows it
with a progress bar until it ends. Prints a one-line summary last; exits 1 when the input is
refused, or the job fails, is canceled, or classifies nothing."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from documents.classification import selectors, services
from documents.classification.models import ClassificationJob
from documents.models import DocumentSet


def labels_from_option(value: str) -> list[dict[str, str]]:
    """`a,b,c` or `a=what a means,b=...`: a label without a description is described by its
    name."""
    labels = []
    for item in value.split(","):
        name, _eq, description = item.partition("=")
        if name.strip():
            labels.append({"name": name.strip(), "description": description.strip() or name})
    return labels


def labels_from_file(path: str) -> list[dict[str, str]]:
    """A JSON object mapping label -> description (or a list of {"name", "description"})."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read labels from {path}: {error}") from error
    if isinstance(data, dict):
        return [{"name": str(k), "description": str(v)} for k, v in data.items()]
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return data
    raise CommandError(f"{path}: expected a JSON object of label -> description")


class Command(BaseCommand):
    help = "Classify the ready documents of a set into labels with Claude (batch or realtime)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("set_name", metavar="SET", help="the document set's name")
        labels = parser.add_mutually_exclusive_group(required=True)
        labels.add_argument("--labels", help="comma-separated labels, each optionally name=desc")
        labels.add_argument("--labels-file", help="JSON file mapping label -> description")
        parser.add_argument("--instructions", required=True, help="what the labels are for")
        parser.add_argument("--model", help="model id (default: the cheapest current model)")
        parser.add_argument(
            "--mode", choices=ClassificationJob.Mode.values, default=ClassificationJob.Mode.BATCH
        )
        parser.add_argument(
            "--fields",
            default="",
            help="extra output fields, comma-separated: confidence,rationale,key_phrases",
        )
        parser.add_argument("--search", default="", help="only files whose name contains this")
        parser.add_argument("--user", help="username the job runs as (default: the set's owner)")
        parser.add_argument("--wait", action="store_true", help="follow the job until it ends")
        parser.add_argument("--timeout", type=float, default=0, help="give up waiting after N s")
        parser.add_argument("--yes", action="store_true", help="start without asking on a TTY")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        document_set = DocumentSet.objects.filter(name=options["set_name"]).first()
        if document_set is None:
            raise CommandError(f"no document set named {options['set_name']!r}")
        user = document_set.owner
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"no user {options['user']!r}")
        labels = (
            labels_from_option(options["labels"])
            if options["labels"] is not None
            else labels_from_file(options["labels_file"])
        )
        fields = [f.strip() for f in options["fields"].split(",") if f.strip()]
        kwargs = {
            "document_set": document_set,
            "labels": labels,
            "instructions": options["instructions"],
            "model_id": options["model"] or services.default_model_id(),
            "extra_fields": fields,
            "mode": options["mode"],
            "document_filter": {"search": options["search"]} if options["search"] else {},
        }
        try:
            kwargs["labels"] = services.clean_labels(labels)
            estimate = services.classification_job_estimate(**kwargs)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        cost = f"${estimate.cost_usd:.4f}" if estimate.cost_usd is not None else "no price"
        price = "batch price" if estimate.batch_price else "standard price"
        self.stdout.write(
            f"Estimate: {estimate.documents:,} documents, {estimate.input_tokens:,} input and "
            f"~{estimate.output_tokens:,} output tokens, {cost} at {price} ({estimate.model_id})."
        )
        if sys.stdin.isatty() and not options["yes"]:
            answer = input("Start the job? [y/N] ").strip().lower()
            if answer not in ("y", "yes"):
                raise CommandError("not started")
        try:
            job = services.classification_job_create(created_by=user, **kwargs)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        if not options["wait"]:
            self.stdout.write(
                f"Job {job.pk} started: {job.document_count:,} documents in {job.mode} mode; "
                f"follow it at {job.get_absolute_url()} or with --wait."
            )
            return
        self._follow(job, options)

    def _follow(self, job: ClassificationJob, options: dict[str, Any]) -> None:
        tty = self.stdout.isatty() and not options["no_progress"]
        started = time.monotonic()
        last_line = ""
        try:
            while True:
                job.refresh_from_db()
                progress = selectors.classification_job_progress(job=job)
                line = self._progress_line(job, progress)
                if tty:
                    self.stdout.write(f"\r{line}\033[K", ending="")
                    self.stdout.flush()
                elif line != last_line:
                    self.stdout.write(line)
                last_line = line
                if not job.is_open:
                    break
                if options["timeout"] and time.monotonic() - started > options["timeout"]:
                    if tty:
                        self.stdout.write("")
                    raise CommandError(f"job {job.pk} still {job.status} after the timeout")
                time.sleep(1.0)
        except KeyboardInterrupt:
            self.stdout.write("")
            raise CommandError(f"stopped waiting; job {job.pk} goes on") from None
        if tty:
            self.stdout.write("")
        counts = progress.counts
        cost = selectors.classification_job_cost(job=job)
        summary = (
            f"Job {job.pk} {job.status}: {progress.total:,} documents, "
            f"{counts['succeeded']:,} classified, {counts['invalid']:,} invalid, "
            f"{counts['errored']:,} errored, {counts['expired']:,} expired, "
            f"{counts['canceled']:,} canceled; cost ${cost:.4f} "
            f"(estimate ${job.estimated_cost_usd:.4f})."
        )
        # A failure: the job did not complete, or it did and not one document got a label.
        if job.status != ClassificationJob.Status.COMPLETED or (
            progress.total and not counts["succeeded"]
        ):
            raise CommandError(summary + (f" {job.error}" if job.error else ""))
        self.stdout.write(summary)

    @staticmethod
    def _progress_line(job: ClassificationJob, progress: Any) -> str:
        width = 30
        filled = int(width * progress.done / progress.total) if progress.total else 0
        bar = "#" * filled + "." * (width - filled)
        return (
            f"Job {job.pk} [{bar}] {progress.done:,}/{progress.total:,} "
            f"{job.get_status_display().lower()}"
        )
