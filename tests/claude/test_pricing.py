"""Cost against hand-computed figures (reference section J; prices from the seeded table, G).

Each expected value is worked out in the comment beside it, in USD per million tokens.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from claudeapp.claude.config import get_config
from claudeapp.claude.context import CallContext
from claudeapp.claude.ledger import Entry, price, save
from claudeapp.claude.pricing import Tokens, compute_cost, usage_tokens
from claudeapp.models import ModelPrice, UsageRecord

pytestmark = pytest.mark.usefixtures("seeded")

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def cost(model: str, tokens: Tokens, *, batch: bool = False, when: dt.datetime = NOW) -> Decimal:
    rates = get_config().prices.rates_at(model, when)
    assert rates is not None, model
    return compute_cost(tokens, rates, batch=batch)


def test_plain_call():
    # Sonnet 5.5: 1,000 in x $2 + 500 out x $10 = 2,000 + 5,000 = 7,000 / 1e6
    assert cost("claude-sonnet-5-5", Tokens(input=1000, output=500)) == Decimal("0.007")


def test_five_minute_cache_write():
    # 100 x 2 + 2,000 x 2.50 + 50 x 10 = 200 + 5,000 + 500 = 5,700 / 1e6
    tokens = Tokens(input=100, cache_write_5m=2000, output=50)
    assert cost("claude-sonnet-5-5", tokens) == Decimal("0.0057")


def test_one_hour_cache_write():
    # 100 x 2 + 2,000 x 4 + 50 x 10 = 200 + 8,000 + 500 = 8,700 / 1e6
    tokens = Tokens(input=100, cache_write_1h=2000, output=50)
    assert cost("claude-sonnet-5-5", tokens) == Decimal("0.0087")


def test_cache_read():
    # 100 x 2 + 2,000 x 0.20 + 50 x 10 = 200 + 400 + 500 = 1,100 / 1e6
    tokens = Tokens(input=100, cache_read=2000, output=50)
    assert cost("claude-sonnet-5-5", tokens) == Decimal("0.0011")


def test_mixed_one_hour_and_five_minute_writes_from_the_api_usage():
    # The API reports the writes twice: as a total and split by TTL. Counted once:
    # 10 x 2 + 3,000 x 4 (1h) + 1,000 x 2.50 (5m) + 200 x 10 = 20 + 12,000 + 2,500 + 2,000
    usage = {
        "input_tokens": 10,
        "output_tokens": 200,
        "cache_creation_input_tokens": 4000,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 3000},
    }
    tokens = usage_tokens(usage)
    assert (tokens.cache_write_5m, tokens.cache_write_1h, tokens.prompt) == (1000, 3000, 4010)
    assert cost("claude-sonnet-5-5", tokens) == Decimal("0.01652")


def test_write_total_without_split_counts_as_five_minute():
    tokens = usage_tokens(
        {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 800}
    )
    assert (tokens.cache_write_5m, tokens.cache_write_1h) == (800, 0)


def test_batch_discount_applies_to_every_part_including_cache():
    # Standard: 1,000 x 2 + 2,000 x 2.50 + 4,000 x 0.20 + 500 x 10
    #         = 2,000 + 5,000 + 800 + 5,000 = 12,800; batch x 0.5 = 6,400 / 1e6
    tokens = Tokens(input=1000, cache_write_5m=2000, cache_read=4000, output=500)
    assert cost("claude-sonnet-5-5", tokens, batch=True) == Decimal("0.0064")


def test_haiku_5_5_below_100k_prompt_tokens():
    # Prompt 50,000 + 40,000 read = 90,000 <= 100K: standard rates
    # 50,000 x 0.10 + 40,000 x 0.01 + 1,000 x 0.50 = 5,000 + 400 + 500 = 5,900 / 1e6
    tokens = Tokens(input=50_000, cache_read=40_000, output=1000)
    assert cost("claude-haiku-5-5", tokens) == Decimal("0.0059")


def test_haiku_5_5_above_100k_bills_the_whole_request_at_long_rates():
    # Prompt 60,000 + 50,000 read = 110,000 > 100K: every token, output too, at long rates
    # 60,000 x 0.50 + 50,000 x 0.05 + 1,000 x 2.50 = 30,000 + 2,500 + 2,500 = 35,000 / 1e6
    tokens = Tokens(input=60_000, cache_read=50_000, output=1000)
    assert cost("claude-haiku-5-5", tokens) == Decimal("0.035")


def test_haiku_5_5_exactly_100k_is_still_the_standard_tier():
    # 100,000 x 0.10 = 10,000 / 1e6
    assert cost("claude-haiku-5-5", Tokens(input=100_000)) == Decimal("0.01")


def test_haiku_5_5_long_tier_counts_cache_writes_in_the_prompt_and_batch_stacks():
    # Prompt 20,000 in + 90,000 1h write = 110,000 > 100K
    # 20,000 x 0.50 + 90,000 x 1.00 + 100 x 2.50 = 10,000 + 90,000 + 250 = 100,250; x 0.5
    tokens = Tokens(input=20_000, cache_write_1h=90_000, output=100)
    assert cost("claude-haiku-5-5", tokens, batch=True) == Decimal("0.050125")


def test_opus_5_5_reads_cost_one_twentieth_of_input():
    # 100,000 reads x $0.20 = 0.02, against 100,000 input x $4 = 0.40 (0.05x)
    read = cost("claude-opus-5-5", Tokens(cache_read=100_000))
    fresh = cost("claude-opus-5-5", Tokens(input=100_000))
    assert read == Decimal("0.02")
    assert read / fresh == Decimal("0.05")


def test_thinking_tokens_are_inside_output_not_added():
    # Opus 5.5: 1,000 output (of which 800 thinking) x $20 = 20,000 / 1e6, not 1,800 x $20
    usage = {
        "input_tokens": 0,
        "output_tokens": 1000,
        "output_tokens_details": {"thinking_tokens": 800},
    }
    tokens = usage_tokens(usage)
    assert tokens.thinking == 800
    assert cost("claude-opus-5-5", tokens) == Decimal("0.02")


def test_smallest_price_is_kept_to_the_nano_dollar():
    # One Haiku 5.5 batch input token: 0.10 / 1e6 x 0.5 = 5e-8 (section J)
    assert cost("claude-haiku-5-5", Tokens(input=1), batch=True) == Decimal("0.00000005")
    record_cost = cost("claude-haiku-5-5", Tokens(input=1), batch=True)
    assert record_cost.as_tuple().exponent == -12


def test_a_price_change_mid_month_prices_each_call_at_its_date():
    # Sonnet 5.5 gets cheaper on the 15th: $1 in / $5 out from then on.
    ModelPrice.objects.create(
        model_id="claude-sonnet-5-5",
        effective_from=dt.datetime(2026, 11, 15, tzinfo=dt.UTC),
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("5"),
        cache_write_5m_per_mtok=Decimal("1.25"),
        cache_write_1h_per_mtok=Decimal("2"),
        cache_read_per_mtok=Decimal("0.10"),
    )
    config = get_config()  # the save dropped the cached copy
    tokens = Tokens(input=1000, output=1000)
    ctx = CallContext("pricing-test")
    before = Entry(ctx=ctx, kind="message", model_id="claude-sonnet-5-5", tokens=tokens,
                   created_at=dt.datetime(2026, 11, 10, tzinfo=dt.UTC))  # fmt: skip
    after = Entry(ctx=ctx, kind="message", model_id="claude-sonnet-5-5", tokens=tokens,
                  created_at=dt.datetime(2026, 11, 20, tzinfo=dt.UTC))  # fmt: skip
    price(config, before)
    price(config, after)
    # 10th: 1,000 x 2 + 1,000 x 10 = 12,000 / 1e6; 20th: 1,000 x 1 + 1,000 x 5 = 6,000 / 1e6
    assert before.cost_usd == Decimal("0.012")
    assert after.cost_usd == Decimal("0.006")
    save(before)
    save(after)
    november = UsageRecord.objects.filter(
        feature="pricing-test", created_at__month=11, created_at__year=2026
    )
    assert sum(r.cost_usd for r in november) == Decimal("0.018")
    assert {r.price.effective_from.day for r in november} == {1, 15}


def test_no_price_leaves_the_row_unpriced_not_free():
    entry = Entry(ctx=CallContext("x"), kind="message", model_id="claude-unknown-9",
                  tokens=Tokens(input=10, output=10))  # fmt: skip
    price(get_config(), entry)
    assert entry.cost_usd is None
