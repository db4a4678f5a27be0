"""Seed the model registry (reference section K) and prices (section G, USD per million tokens).

Values marked `*` in section K were chosen by the project where no source settled them; they are
copied as they are. Change a value in admin (or with `manage.py sync_models`), not here.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db import migrations

M = 1_000_000
K200 = 200_000
K128 = 128_000
K64 = 64_000
SAMPLING = "2023-06-01"

# id, display, line, context, max out, thinking modes, forced tool_choice, prefill,
# structured outputs, effort, sampling version, min cacheable, lifecycle, legacy, extras
SPECS = [
    ("claude-opus-5-5", "Claude Opus 5.5", "opus", M, K128, ["adaptive"],
     False, False, True, True, "", 1024, "active", False, {}),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5", "sonnet", M, K128, ["adaptive", "between_tools"],
     False, False, True, True, "", 1024, "active", False, {}),
    ("claude-haiku-5-5", "Claude Haiku 5.5", "haiku", M, K128, ["adaptive", "disabled"],
     True, False, True, True, "", 2048, "active", False, {}),
    ("claude-fable-5-1", "Claude Fable 5.1", "fable", M, K128, ["adaptive"],
     False, False, True, True, "", 512, "active", False, {}),
    ("claude-opus-5", "Claude Opus 5", "opus", M, K128, ["adaptive", "disabled"],
     False, False, True, True, "", 512, "active", True, {}),
    ("claude-sonnet-5", "Claude Sonnet 5", "sonnet", M, K128, ["adaptive", "disabled"],
     False, False, True, True, "", 1024, "active", True, {}),
    ("claude-opus-4-8", "Claude Opus 4.8", "opus", M, K128, ["adaptive", "disabled"],
     True, False, True, True, "", 1024, "active", False, {}),
    ("claude-opus-4-7", "Claude Opus 4.7", "opus", M, K128, ["adaptive", "disabled"],
     True, False, True, True, "", 2048, "active", False, {}),
    ("claude-opus-4-6", "Claude Opus 4.6", "opus", M, K128, ["adaptive", "enabled", "disabled"],
     True, False, True, True, SAMPLING, 4096, "active", False, {}),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "sonnet", M, K64,
     ["adaptive", "enabled", "disabled"],
     True, False, True, True, SAMPLING, 2048, "active", False, {}),
    ("claude-opus-4-5", "Claude Opus 4.5", "opus", K200, K64, ["enabled", "disabled"],
     True, True, True, True, SAMPLING, 4096, "active", False,
     {"aliases": ["claude-opus-4-5-20251101"]}),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "haiku", K200, K64, ["enabled", "disabled"],
     True, True, True, False, SAMPLING, 4096, "active", True,
     {"aliases": ["claude-haiku-4-5-20251001"]}),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5", "sonnet", K200, K64, ["enabled", "disabled"],
     True, True, True, False, SAMPLING, 1024, "deprecated", False,
     {"aliases": ["claude-sonnet-4-5-20250929"], "successor": "claude-sonnet-5-5",
      "retires_at": dt.datetime(2026, 11, 30, tzinfo=dt.UTC)}),
]  # fmt: skip

# id: input, 5m write, 1h write, cache read, output (section G)
OPUS4 = ("5", "6.25", "10", "0.50", "25")
SONNET4 = ("3", "3.75", "6", "0.30", "15")
PRICES = {
    "claude-fable-5-1": ("10", "12.50", "20", "0.25", "50"),
    "claude-mythos-5-1": ("10", "12.50", "20", "0.25", "50"),
    "claude-opus-5-5": ("4", "5", "8", "0.20", "20"),
    "claude-sonnet-5-5": ("2", "2.50", "4", "0.20", "10"),
    "claude-haiku-5-5": ("0.10", "0.125", "0.20", "0.01", "0.50"),
    "claude-opus-5": ("5", "6.25", "10", "0.50", "25"),
    "claude-sonnet-5": ("2", "2.50", "4", "0.20", "10"),
    "claude-fable-5": ("10", "12.50", "20", "1.00", "50"),
    "claude-mythos-5": ("10", "12.50", "20", "1.00", "50"),
    "claude-opus-4-8": OPUS4,
    "claude-opus-4-7": OPUS4,
    "claude-opus-4-6": OPUS4,
    "claude-opus-4-5": OPUS4,
    "claude-sonnet-4-6": SONNET4,
    "claude-sonnet-4-5": SONNET4,
    "claude-haiku-4-5": ("1", "1.25", "2", "0.10", "5"),
}
# Haiku 5.5 bills the whole request at these when its prompt is over 100K tokens (section J).
LONG_PROMPT = {"claude-haiku-5-5": (100_000, ("0.50", "0.625", "1.00", "0.05", "2.50"))}
SEED_FROM = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def seed(apps, schema_editor):
    ModelSpec = apps.get_model("claudeapp", "ModelSpec")
    ModelPrice = apps.get_model("claudeapp", "ModelPrice")
    for (model_id, display, line, context, max_out, thinking, forced, prefill, structured,
         effort, sampling, min_cache, lifecycle, legacy, extra) in SPECS:  # fmt: skip
        ModelSpec.objects.update_or_create(
            model_id=model_id,
            defaults={
                "display_name": display,
                "line": line,
                "context_window": context,
                "max_output_tokens": max_out,
                "thinking_modes": thinking,
                "forced_tool_choice": forced,
                "prefill": prefill,
                "structured_outputs": structured,
                "effort": effort,
                "sampling_api_version": sampling,
                "min_cacheable_tokens": min_cache,
                "lifecycle": lifecycle,
                "legacy": legacy,
                "aliases": extra.get("aliases", []),
                "successor": extra.get("successor", ""),
                "retires_at": extra.get("retires_at"),
            },
        )
    for model_id, (inp, w5, w1, read, out) in PRICES.items():
        long = LONG_PROMPT.get(model_id)
        long_rates = {}
        if long:
            threshold, (l_in, l_w5, l_w1, l_read, l_out) = long
            long_rates = {
                "long_prompt_threshold": threshold,
                "long_input_per_mtok": Decimal(l_in),
                "long_cache_write_5m_per_mtok": Decimal(l_w5),
                "long_cache_write_1h_per_mtok": Decimal(l_w1),
                "long_cache_read_per_mtok": Decimal(l_read),
                "long_output_per_mtok": Decimal(l_out),
            }
        ModelPrice.objects.update_or_create(
            model_id=model_id,
            effective_from=SEED_FROM,
            defaults={
                "input_per_mtok": Decimal(inp),
                "cache_write_5m_per_mtok": Decimal(w5),
                "cache_write_1h_per_mtok": Decimal(w1),
                "cache_read_per_mtok": Decimal(read),
                "output_per_mtok": Decimal(out),
                "batch_multiplier": Decimal("0.5"),
                "source": "reference/claude-api.md section G (seed)",
                **long_rates,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("claudeapp", "ModelPrice").objects.filter(effective_from=SEED_FROM).delete()
    apps.get_model("claudeapp", "ModelSpec").objects.filter(
        model_id__in=[s[0] for s in SPECS], synced_at__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("claudeapp", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
