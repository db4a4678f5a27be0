"""Model choice and the registry: routes, retired ids, sampling, and drift against /v1/models."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.core.management import call_command

from claudeapp.claude import CallContext, UnsupportedParameter
from claudeapp.claude.config import get_config
from claudeapp.claude.registry import cheapest_model, choose
from claudeapp.claude.sync import registry_fields, sync_models
from claudeapp.models import ModelPrice, ModelRoute, ModelSpec, UsageRecord
from tests.claude.helpers import requests_made

pytestmark = pytest.mark.django_db
HI = [{"role": "user", "content": "hi"}]


def test_routes_pick_cheapest_for_classification_sonnet_for_chat_opus_on_request(seeded):
    config = get_config()
    assert choose(config, "classification").spec.model_id == "claude-haiku-5-5"
    assert cheapest_model(config) == "claude-haiku-5-5"
    assert choose(config, "chat").spec.model_id == "claude-sonnet-5-5"
    assert choose(config, "chat", premium=True).spec.model_id == "claude-opus-5-5"
    assert choose(config, "anything-else").spec.model_id == "claude-sonnet-5-5"


def test_an_admin_route_overrides_the_settings(seeded):
    ModelRoute.objects.create(feature="chat", model_id="claude-opus-5-5", fallback_model_id="")
    choice = choose(get_config(), "chat")
    assert (choice.spec.model_id, choice.fallback) == ("claude-opus-5-5", "")


def test_a_retired_model_is_sent_as_its_successor_and_logged(door, emu, caplog):
    ModelSpec.objects.filter(model_id="claude-sonnet-4-5").update(lifecycle="retired")
    with caplog.at_level(logging.WARNING, logger="claudeapp.claude"):
        reply = door.create(
            CallContext("chat"), model="claude-sonnet-4-5-20250929", messages=HI, max_tokens=10
        )
    assert reply.model == "claude-sonnet-5-5"
    row = UsageRecord.objects.get()
    assert (row.model_id, row.requested_model_id) == (
        "claude-sonnet-5-5",
        "claude-sonnet-4-5-20250929",
    )
    mapped = [r for r in caplog.records if getattr(r, "event", "") == "claude.model_retired"]
    assert [(r.model, r.successor) for r in mapped] == [("claude-sonnet-4-5", "claude-sonnet-5-5")]


def test_a_deprecated_model_is_still_sent_as_asked(door, emu):
    with pytest.warns(DeprecationWarning, match="claude-sonnet-4-5"):  # the SDK's own warning
        reply = door.create(
            CallContext("chat"), model="claude-sonnet-4-5", messages=HI, max_tokens=10
        )
    assert reply.model == "claude-sonnet-4-5"


def test_temperature_goes_out_under_the_old_api_version_for_models_that_take_it(door, emu):
    # claude-sonnet-4-6 accepts sampling under 2023-06-01 only; the emulator rejects it under
    # the SDK's default 2026-10-21, so this passing means the door sent the old version.
    reply = door.create(
        CallContext("chat"), model="claude-sonnet-4-6", messages=HI, max_tokens=10,
        temperature=0.2,
    )  # fmt: skip
    assert reply.stop_reason


def test_temperature_is_refused_unsent_for_models_that_do_not_take_it(door, emu):
    with pytest.raises(UnsupportedParameter):
        door.create(CallContext("chat"), messages=HI, max_tokens=10, temperature=0.2)
    assert requests_made(emu) == 0


def test_effort_is_sent_as_output_config_where_the_model_supports_it(door, emu):
    assert door.create(CallContext("chat"), messages=HI, max_tokens=10, effort="low").stop_reason
    # Haiku 4.5 takes no effort: the door leaves it out rather than earn a 400.
    reply = door.create(
        CallContext("chat"), model="claude-haiku-4-5", messages=HI, max_tokens=10, effort="low"
    )
    assert reply.stop_reason


def test_the_registry_matches_the_emulators_model_list(door, emu):
    """Drift test: the app's registry (seeded from section K) against the emulator's own copy
    of the table, served on GET /v1/models. Neither imports the other."""
    infos = door.list_models()
    report = sync_models(dry_run=True, infos=infos)
    assert report.created == [], f"models the registry lacks: {report.created}"
    assert report.changed == {}, "\n".join(report.lines())
    assert report.missing_from_api == []
    # Prices: the emulator reports the section G figures it bills by, as an extra field.
    mismatched = []
    for info in infos:
        pricing = info.get("pricing_usd_per_mtok")
        if not pricing:
            continue
        row = ModelPrice.objects.filter(model_id=info["id"]).latest("effective_from")
        ours = {
            "input": row.input_per_mtok,
            "cache_write_5m": row.cache_write_5m_per_mtok,
            "cache_write_1h": row.cache_write_1h_per_mtok,
            "cache_read": row.cache_read_per_mtok,
            "output": row.output_per_mtok,
            "batch_discount": row.batch_multiplier,
        }
        for name, value in ours.items():
            if float(value) != float(pricing[name]):
                mismatched.append(f"{info['id']}.{name}: ours {value}, emulator {pricing[name]}")
        long = pricing.get("long_prompt")
        if long:
            assert row.long_prompt_threshold == long["threshold_tokens"]
            assert float(row.long_output_per_mtok) == float(long["output"])
    assert mismatched == []


def test_sync_models_refreshes_a_drifted_row(door, emu):
    ModelSpec.objects.filter(model_id="claude-opus-5-5").update(
        context_window=1, thinking_modes=["enabled"], min_cacheable_tokens=7
    )
    out = io.StringIO()
    call_command("sync_models", "--dry-run", stdout=out)
    assert "changed: claude-opus-5-5.context_window: 1 -> 1000000" in out.getvalue()
    assert ModelSpec.objects.get(model_id="claude-opus-5-5").context_window == 1

    call_command("sync_models", stdout=io.StringIO())
    spec = ModelSpec.objects.get(model_id="claude-opus-5-5")
    assert (spec.context_window, spec.thinking_modes) == (1_000_000, ["adaptive"])
    assert spec.synced_at is not None
    # The door sees the change at once (the save dropped its cached copy).
    assert get_config().spec("claude-opus-5-5").context_window == 1_000_000


def test_registry_fields_read_the_api_shape():
    info = json.loads(
        """{"id": "m", "display_name": "M", "lifecycle": "deprecated",
        "retires_at": "2026-11-30T00:00:00Z", "max_input_tokens": 200000, "max_tokens": 64000,
        "capabilities": {"thinking": {"types": {"adaptive": {"supported": false},
        "enabled": {"supported": true}, "disabled": {"supported": true},
        "between_tools": {"supported": false}}}, "effort": {"supported": false},
        "structured_outputs": {"supported": true}}}"""
    )
    fields = registry_fields(info)
    assert fields["thinking_modes"] == ["enabled", "disabled"]
    assert (fields["effort"], fields["structured_outputs"]) == (False, True)
    assert fields["retires_at"].year == 2026
    assert "forced_tool_choice" not in fields  # absent facts are not guessed


def test_the_door_tells_features_what_a_model_accepts(door):
    assert door.model_for("classification").model_id == "claude-haiku-5-5"
    assert door.model_for("chat", premium=True).model_id == "claude-opus-5-5"
    sonnet_4_6 = door.spec("claude-sonnet-4-6")
    assert sonnet_4_6.sampling_api_version == "2023-06-01" and sonnet_4_6.effort
    assert door.spec("claude-haiku-4-5-20251001").model_id == "claude-haiku-4-5"
    assert not door.spec("claude-opus-5-5").sampling_api_version
    assert door.spec("claude-opus-5-5").thinking_always_on
    unknown = door.spec("claude-future-9")
    assert not unknown.known and unknown.model_id == "claude-future-9"
