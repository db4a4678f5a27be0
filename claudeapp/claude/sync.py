"""Refresh the model registry from `GET /v1/models` (and compare without writing)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from claudeapp.claude.config import invalidate

__all__ = ["SyncReport", "registry_fields", "sync_models"]

THINKING_TYPES = ("adaptive", "enabled", "disabled", "between_tools")
SAMPLING_VERSION = "2023-06-01"


def _when(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value
    return parse_datetime(str(value))


def _supported(node: Any) -> bool | None:
    return bool(node.get("supported")) if isinstance(node, dict) and "supported" in node else None


def registry_fields(info: dict[str, Any]) -> dict[str, Any]:
    """`ModelSpec` fields from one `ModelInfo` dict: the API's own fields, and the extra fields
    (section K facts) an emulator or gateway may add. Absent facts are left out, not guessed."""
    out: dict[str, Any] = {
        "display_name": info.get("display_name") or "",
        "lifecycle": info.get("lifecycle") or "active",
        "deprecated_at": _when(info.get("deprecated_at")),
        "retires_at": _when(info.get("retires_at")),
    }
    if info.get("line"):
        out["line"] = info["line"]
    if info.get("max_input_tokens"):
        out["context_window"] = int(info["max_input_tokens"])
    if info.get("max_tokens"):
        out["max_output_tokens"] = int(info["max_tokens"])
    caps = info.get("capabilities") or {}
    thinking = (caps.get("thinking") or {}).get("types") or {}
    if thinking:
        out["thinking_modes"] = [t for t in THINKING_TYPES if _supported(thinking.get(t))]
    for cap, name in (("effort", "effort"), ("structured_outputs", "structured_outputs")):
        supported = _supported(caps.get(cap))
        if supported is not None:
            out[name] = supported
    extras = {
        "aliases": "aliases",
        "legacy": "legacy",
        "successor": "successor",
        "forced_tool_choice": "forced_tool_choice",
        "prefill": "prefill",
        "min_cacheable_tokens": "min_cacheable_tokens",
    }
    for source, name in extras.items():
        if source in info:
            value = info[source]
            out[name] = value if value is not None else ("" if name == "successor" else value)
    if "sampling_2023_06_01" in info:
        out["sampling_api_version"] = SAMPLING_VERSION if info["sampling_2023_06_01"] else ""
    if "aliases" in out:
        out["aliases"] = list(out["aliases"] or [])
    return out


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    missing_from_api: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} new, {len(self.changed)} changed, {len(self.unchanged)} "
            f"unchanged, {len(self.missing_from_api)} in the registry but not in the API"
        )

    def lines(self) -> list[str]:
        out = [f"new: {m}" for m in self.created]
        for model_id, diffs in self.changed.items():
            for name, (old, new) in diffs.items():
                out.append(f"changed: {model_id}.{name}: {old!r} -> {new!r}")
        out += [f"not in the API: {m}" for m in self.missing_from_api]
        return out


def _normal(value: Any) -> Any:
    if isinstance(value, list):
        return sorted(value)
    return value


def sync_models(*, dry_run: bool = False, infos: list[dict[str, Any]] | None = None) -> SyncReport:
    """Compare the registry with the API's model list; write the differences unless `dry_run`."""
    from claudeapp.claude import get_door
    from claudeapp.models import ModelSpec

    infos = infos if infos is not None else get_door().list_models()
    report = SyncReport()
    now = dt.datetime.now(dt.UTC)
    existing = {spec.model_id: spec for spec in ModelSpec.objects.all()}
    seen = set()
    with transaction.atomic():
        for info in infos:
            model_id = info["id"]
            seen.add(model_id)
            fields = registry_fields(info)
            spec = existing.get(model_id)
            if spec is None:
                report.created.append(model_id)
                if not dry_run:
                    defaults = {"context_window": 200_000, "max_output_tokens": 64_000}
                    ModelSpec.objects.create(
                        model_id=model_id, synced_at=now, **{**defaults, **fields}
                    )
                continue
            diffs = {
                name: (getattr(spec, name), value)
                for name, value in fields.items()
                if _normal(getattr(spec, name)) != _normal(value)
            }
            if diffs:
                report.changed[model_id] = diffs
            else:
                report.unchanged.append(model_id)
            if not dry_run:
                for name, value in fields.items():
                    setattr(spec, name, value)
                spec.synced_at = now
                spec.save()
        report.missing_from_api = sorted(set(existing) - seen)
    if not dry_run:
        invalidate()
    return report
