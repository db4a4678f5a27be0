"""manage.py sync_models [--dry-run]: refresh the model registry from GET /v1/models."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Refresh the model registry (ModelSpec) from the API's GET /v1/models."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Show the differences; write nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from claudeapp.claude import ClaudeError
        from claudeapp.claude.sync import sync_models

        try:
            report = sync_models(dry_run=options["dry_run"])
        except ClaudeError as exc:
            raise CommandError(f"could not list models: {exc.user_message} ({exc})") from exc
        for line in report.lines():
            self.stdout.write(line)
        prefix = "would change: " if options["dry_run"] else ""
        self.stdout.write(prefix + report.summary())
