from __future__ import annotations

from django.apps import AppConfig


class ClaudeappConfig(AppConfig):
    name = "claudeapp"
    verbose_name = "Claude usage and configuration"

    def ready(self) -> None:
        # Claude door: registers the "no key and no base URL" system check, and says so in the
        # first log lines of every process (web, worker, beat) rather than on the first call.
        from claudeapp.claude import checks

        checks.log_startup_problem()
