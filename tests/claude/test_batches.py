"""Message Batches through the door: booked at the batch price, once per line (emulator part 2)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from claudeapp.claude import BudgetExceeded, CallContext, ClaudeUnavailable
from claudeapp.claude.limits import Limits
from claudeapp.models import Budget, UsageRecord
from claudeapp.redis import get_redis

pytestmark = pytest.mark.django_db
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["invoice", "receipt", "contract"]}},
    "required": ["label"],
}
SYSTEM = " ".join(f"rule{i}" for i in range(2500))  # over Haiku 5.5's 2,048-token minimum


@pytest.fixture
def batches(door, emu):
    emu.config(batch_seconds=0.3)
    return door


def wait_ended(door, batch_id: str) -> None:
    deadline = time.monotonic() + 20
    while door.batch_retrieve(batch_id).processing_status != "ended":
        assert time.monotonic() < deadline, "batch did not end"
        time.sleep(0.1)


def request(custom_id: str, text: str, *, cached: bool = True) -> dict:
    from claudeapp.claude import structured_params

    system = [{"type": "text", "text": SYSTEM}]
    if cached:
        system[0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    return {
        "custom_id": custom_id,
        "params": {
            "max_tokens": 100,
            "system": system,
            "messages": [{"role": "user", "content": text}],
            **structured_params(SCHEMA, "claude-haiku-5-5"),
        },
    }


def test_results_are_booked_at_the_batch_price_once_per_line(batches, emu, user):
    from claudeapp.claude import structured_parse

    ctx = CallContext("classification", user.pk)
    # The first request warms the cache; the batch then reads it (batches share the cache).
    batches.create(ctx, model="claude-haiku-5-5", max_tokens=5, **{
        k: v for k, v in request("warm", "warm up")["params"].items() if k != "max_tokens"
    })  # fmt: skip
    batch = batches.batch_create(
        ctx,
        [request("a", "pay this invoice"), request("b", "your receipt"), request("c", "signed")],
        model="claude-haiku-5-5",
    )
    wait_ended(batches, batch.id)
    results = list(batches.batch_results(ctx, batch.id))
    assert sorted(r.custom_id for r in results) == ["a", "b", "c"]
    assert all(r.type == "succeeded" and r.booked for r in results)
    assert all(structured_parse(r.message, SCHEMA).ok for r in results)

    rows = UsageRecord.objects.filter(kind="batch_result").order_by("custom_id")
    assert rows.count() == 3
    for row, result in zip(rows, sorted(results, key=lambda r: r.custom_id), strict=True):
        usage = result.message.usage
        assert row.batch_id == batch.id and row.model_id == "claude-haiku-5-5"
        assert row.cache_read_tokens == usage.cache_read_input_tokens > 0
        # Haiku 5.5 batch: half of $0.10 in, $0.01 read, $0.125 5m write, $0.20 1h write,
        # $0.50 out (per million), on every part.
        expected = (
            (
                Decimal(usage.input_tokens) * Decimal("0.10")
                + Decimal(usage.cache_read_input_tokens) * Decimal("0.01")
                + Decimal(usage.cache_creation.ephemeral_5m_input_tokens) * Decimal("0.125")
                + Decimal(usage.cache_creation.ephemeral_1h_input_tokens) * Decimal("0.20")
                + Decimal(usage.output_tokens) * Decimal("0.50")
            )
            / 10**6
            * Decimal("0.5")
        )
        assert row.cost_usd == expected
    # Reading the results again books nothing twice.
    again = list(batches.batch_results(ctx, batch.id))
    assert len(again) == 3 and not any(r.booked for r in again)
    assert UsageRecord.objects.filter(kind="batch_result").count() == 3
    # The budget counter holds exactly what was booked (the reservation was given back).
    booked = sum(r.cost_usd for r in UsageRecord.objects.filter(user=user))
    assert Limits().spent(get_redis(), scope="user", period="day", user_id=user.pk) == booked


def test_errored_lines_are_recorded_without_cost(batches, emu):
    ctx = CallContext("classification")
    emu.faults([{"kind": "batch_line", "result": "errored", "count": 1}])
    batch = batches.batch_create(ctx, [request("x", "a"), request("y", "b")])
    wait_ended(batches, batch.id)
    results = {r.custom_id: r for r in batches.batch_results(ctx, batch.id)}
    kinds = sorted(r.type for r in results.values())
    assert kinds == ["errored", "succeeded"]
    errored = next(r for r in results.values() if r.type == "errored")
    assert errored.message is None and errored.error
    row = UsageRecord.objects.get(custom_id=errored.custom_id)
    assert (row.outcome, row.cost_usd) == ("errored", None)


def test_a_create_whose_answer_was_lost_is_not_sent_twice(batches, emu):
    emu.faults([{"kind": "drop_after_effect", "path": "/v1/messages/batches"}])
    with pytest.raises(ClaudeUnavailable):
        batches.batch_create(CallContext("classification"), [request("x", "a")])
    stats = emu.stats()
    assert stats["batches"]["created"] == 1  # created once, never re-sent
    assert len(batches.batch_list(limit=10)) == 1  # and findable, for the caller to adopt


def test_a_batch_is_refused_when_its_estimate_breaks_the_budget(batches, emu):
    Budget.objects.create(scope="feature", feature="classification", period="day",
                          limit_usd=Decimal("0.00001"))  # fmt: skip
    with pytest.raises(BudgetExceeded):
        batches.batch_create(CallContext("classification"), [request("x", "a")])
    assert emu.stats()["batches"]["created"] == 0


def test_cancel_and_list(batches, emu):
    emu.config(batch_seconds=30)
    batch = batches.batch_create(CallContext("classification"), [request("x", "a")])
    assert batches.batch_cancel(batch.id).processing_status in ("canceling", "ended")
    assert batch.id in [b.id for b in batches.batch_list(limit=5)]


# --- booking, without the emulator --------------------------------------------------------------


def line(custom_id: str, result: dict):
    from anthropic.types.messages import MessageBatchIndividualResponse

    return MessageBatchIndividualResponse.model_validate({"custom_id": custom_id, "result": result})


def succeeded(custom_id: str, **usage) -> object:
    message = {
        "id": f"msg_{custom_id}", "type": "message", "role": "assistant",
        "model": "claude-sonnet-5-5", "content": [{"type": "text", "text": "{}"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0, **usage},
    }  # fmt: skip
    return line(custom_id, {"type": "succeeded", "message": message})


def test_lines_are_booked_once_at_the_batch_price(seeded):
    import datetime as dt

    from claudeapp.claude.batches import _entry
    from claudeapp.claude.config import get_config
    from claudeapp.claude.ledger import book_batch_lines, price

    ctx = CallContext("classification")
    when = dt.datetime.now(dt.UTC)
    lines = [
        # Sonnet 5.5 batch: (1,000 x 2 + 4,000 x 0.20 + 3,000 x 2.50 + 100 x 10) x 0.5
        #                  = (2,000 + 800 + 7,500 + 1,000) x 0.5 = 5,650 / 1e6
        succeeded(
            "a",
            input_tokens=1000,
            output_tokens=100,
            cache_read_input_tokens=4000,
            cache_creation_input_tokens=3000,
            cache_creation={"ephemeral_5m_input_tokens": 3000, "ephemeral_1h_input_tokens": 0},
        ),  # fmt: skip
        line(
            "b",
            {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "bad"},
                },
            },
        ),  # fmt: skip
        line("c", {"type": "expired"}),
    ]
    entries = [_entry(ctx, "msgbatch_1", item, when) for item in lines]
    for entry in entries:
        if entry.model_id:
            price(get_config(), entry, batch=True)
    assert entries[0].cost_usd == Decimal("0.00565")
    assert [e.outcome for e in entries] == ["ok", "errored", "expired"]
    assert entries[1].error_message == "bad"
    assert len(book_batch_lines(entries)) == 3
    again = [_entry(ctx, "msgbatch_1", item, when) for item in lines]
    assert book_batch_lines(again) == []
    assert UsageRecord.objects.filter(batch_id="msgbatch_1").count() == 3
    # The same custom_id in another batch is another line.
    assert len(book_batch_lines([_entry(ctx, "msgbatch_2", lines[2], when)])) == 1


def test_the_database_refuses_a_second_row_for_a_batch_line(seeded):
    from django.db import IntegrityError, transaction

    fields = {"feature": "x", "model_id": "m", "outcome": "ok", "batch_id": "b1", "custom_id": "c"}
    UsageRecord.objects.create(**fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        UsageRecord.objects.create(**fields)
    # Rows outside batches (custom_id blank) are not constrained.
    UsageRecord.objects.create(feature="x", model_id="m", outcome="ok", batch_id="b1")
    UsageRecord.objects.create(feature="x", model_id="m", outcome="ok", batch_id="b1")
