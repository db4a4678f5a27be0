from __future__ import annotations

from django.apps import AppConfig


class ClaudeappConfig(AppConfig):
    name = "claudeapp"
    verbose_name = "Claude usage and configuration"
