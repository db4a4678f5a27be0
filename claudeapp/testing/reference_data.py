"""Rows the data migrations seed (model registry, prices, personas), put back after a
transactional test flushed them, with their original keys (live servers cache price rows, and
ledger rows they write point at them)."""

from __future__ import annotations

import importlib

# (data migration module, app label, model name) for every table a migration seeds.
SEEDED = [
    ("claudeapp.migrations.0002_seed_models_and_prices", "claudeapp", "ModelSpec"),
    ("claudeapp.migrations.0002_seed_models_and_prices", "claudeapp", "ModelPrice"),
    ("conversations.migrations.0002_seed_personas", "conversations", "Persona"),
]
_snapshot: dict[str, list[dict]] = {}


def ensure_reference_data() -> None:
    from django.apps import apps

    models = [apps.get_model(app, name) for _, app, name in SEEDED]
    if not _snapshot:
        for module_name in dict.fromkeys(module for module, _, _ in SEEDED):
            module = importlib.import_module(module_name)
            owned = [m for (mod, _, _), m in zip(SEEDED, models, strict=True) if mod == module_name]
            if not all(m.objects.exists() for m in owned):
                module.seed(apps, None)
        for model in models:
            _snapshot[model._meta.label] = list(model.objects.values())
        return
    for model in models:
        if not model.objects.exists():
            model.objects.bulk_create(model(**row) for row in _snapshot[model._meta.label])
