"""The door's async ledger writes: rows booked together go to the database together, and a row
that cannot be stored loses no other row."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from claudeapp.claude import CallContext, ledger
from claudeapp.claude.pricing import Tokens
from claudeapp.models import UsageRecord

# The rows are written on the shared ORM thread, with a connection of its own.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hops(monkeypatch) -> Iterator[list[int]]:
    """How many trips to the ORM thread the writes took (each still runs)."""
    counted: list[int] = []
    real = ledger._insert_batch

    def batch(rows):
        counted.append(len(rows))
        return real(rows)

    monkeypatch.setattr(ledger, "_insert_batch", batch)
    yield counted
    asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())


def _entry(i: int, run: str, **kw) -> ledger.Entry:
    return ledger.Entry(
        ctx=CallContext("chat", None, ("test.thing", f"{run}-{i}")),
        kind="message",
        model_id="claude-haiku-5-5",
        tokens=Tokens(input=10 + i, output=i),
        **kw,
    )


def test_rows_booked_together_go_to_the_database_in_one_trip(hops) -> None:
    run = uuid.uuid4().hex[:8]

    async def book() -> None:
        await asyncio.gather(*(ledger.asave(_entry(i, run)) for i in range(40)))
        await ledger.asave(_entry(40, run))  # alone, later: a trip of its own

    asyncio.run(book())
    assert hops == [40, 1]
    rows = UsageRecord.objects.filter(subject_id__startswith=f"{run}-")
    assert sorted(rows.values_list("input_tokens", "output_tokens")) == [
        (10 + i, i) for i in range(41)
    ]


def test_a_row_that_cannot_be_stored_loses_no_other_row(hops, caplog) -> None:
    run = uuid.uuid4().hex[:8]
    # Two lines of the same batch result: the second breaks the ledger's unique constraint.
    same = {"batch_id": f"msgbatch_{run}", "custom_id": "line-1"}

    async def book() -> None:
        await asyncio.gather(
            ledger.asave(_entry(0, run)),
            ledger.asave(_entry(1, run, **same)),
            ledger.asave(_entry(2, run, **same)),
            ledger.asave(_entry(3, run)),
        )

    with caplog.at_level(logging.ERROR, logger="claudeapp.claude"):
        asyncio.run(book())
    assert hops == [4]
    stored = sorted(
        UsageRecord.objects.filter(subject_id__startswith=f"{run}-").values_list(
            "subject_id", flat=True
        )
    )
    assert stored == [f"{run}-0", f"{run}-1", f"{run}-3"]
    lost = [r for r in caplog.records if getattr(r, "event", "") == "claude.ledger_lost"]
    assert len(lost) == 1 and lost[0].input_tokens == 12  # the third entry's
