"""Rate limits, concurrency and USD budgets: refused before sending, with typed errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from claudeapp.claude import (
    BudgetExceeded,
    CallContext,
    ConcurrencyLimited,
    Failed,
    Final,
    RateLimited,
)
from claudeapp.claude.limits import Limits
from claudeapp.models import Budget, UsageRecord
from claudeapp.redis import get_redis
from tests.claude.helpers import requests_made

pytestmark = pytest.mark.django_db
HI = [{"role": "user", "content": "hi"}]


def spent(**kw) -> Decimal:
    return Limits().spent(get_redis(), **kw)


def test_per_user_requests_per_minute(door, emu, settings, user, other_user, rpm_window):
    settings.CLAUDE_USER_RPM = 2
    rpm_window(5)
    ctx = CallContext("chat", user.pk)
    door.create(ctx, messages=HI, max_tokens=5)
    door.create(ctx, messages=HI, max_tokens=5)
    with pytest.raises(RateLimited) as caught:
        door.create(ctx, messages=HI, max_tokens=5)
    assert 0 < caught.value.retry_after <= 60
    assert caught.value.user_message.startswith("Too many requests right now; try again in ")
    assert requests_made(emu) == 2
    # Another user is not held back by the first one's count.
    door.create(CallContext("chat", other_user.pk), messages=HI, max_tokens=5)
    refused = UsageRecord.objects.get(outcome="rate_limited")
    assert (refused.user_id, refused.attempts) == (user.pk, 0)


def test_site_wide_requests_per_minute(door, emu, settings, user, other_user, rpm_window):
    settings.CLAUDE_GLOBAL_RPM = 1
    rpm_window(5)
    door.create(CallContext("chat", user.pk), messages=HI, max_tokens=5)
    with pytest.raises(RateLimited):
        door.create(CallContext("chat", other_user.pk), messages=HI, max_tokens=5)
    assert requests_made(emu) == 1


def test_concurrent_calls_are_capped_and_the_slot_comes_back(door, emu, settings):
    settings.CLAUDE_MAX_CONCURRENT = 1
    ctx = CallContext("chat")
    stream = door.stream(ctx, messages=HI, max_tokens=50)
    next(stream)  # a delta arrived: the stream holds the only slot
    with pytest.raises(ConcurrencyLimited) as caught:
        door.create(ctx, messages=HI, max_tokens=5)
    assert "busy" in caught.value.user_message
    assert isinstance(list(stream)[-1], Final)
    door.create(ctx, messages=HI, max_tokens=5)  # the slot was given back


def test_a_user_budget_refuses_before_sending_and_counts_actual_cost(door, emu, user):
    Budget.objects.create(scope="user", user=user, period="day", limit_usd=Decimal("0.003"))
    ctx = CallContext("chat", user.pk)
    # Sonnet 5.5: estimate = 4 in x $2 + 100 out x $10 = $0.001008 (fits under $0.003)
    first = door.create(ctx, model="claude-sonnet-5-5", messages=HI, max_tokens=100)
    row = UsageRecord.objects.get()
    assert spent(scope="user", period="day", user_id=user.pk) == row.cost_usd
    assert (
        row.cost_usd
        == Decimal(first.usage.input_tokens * 2 + first.usage.output_tokens * 10) / 10**6
    )
    # max_tokens 500 could cost $0.005: more than what is left, so it is refused unsent.
    with pytest.raises(BudgetExceeded) as caught:
        door.create(ctx, model="claude-sonnet-5-5", messages=HI, max_tokens=500)
    assert caught.value.user_message == (
        "Your daily Claude budget ($0.003) is used up; it resets at midnight UTC."
    )
    assert requests_made(emu) == 1
    assert UsageRecord.objects.filter(outcome="budget_exceeded", attempts=0).count() == 1


def test_the_default_user_budget_applies_to_every_user_and_a_personal_row_overrides_it(
    door, emu, user, other_user
):
    Budget.objects.create(scope="user", period="month", limit_usd=Decimal("0.0001"))
    Budget.objects.create(scope="user", user=other_user, period="month", limit_usd=Decimal("5"))
    with pytest.raises(BudgetExceeded) as caught:
        door.create(CallContext("chat", user.pk), messages=HI, max_tokens=100)
    assert "monthly" in caught.value.user_message
    door.create(CallContext("chat", other_user.pk), messages=HI, max_tokens=100)
    assert requests_made(emu) == 1


def test_a_feature_budget_covers_all_its_users(door, emu, user, other_user):
    Budget.objects.create(scope="feature", feature="rag", period="day", limit_usd=Decimal("0.002"))
    door.create(CallContext("rag", user.pk), messages=HI, max_tokens=100)
    with pytest.raises(BudgetExceeded) as caught:
        door.create(CallContext("rag", other_user.pk), messages=HI, max_tokens=100)
    assert caught.value.user_message.startswith("The daily Claude budget for rag")
    door.create(CallContext("chat", other_user.pk), messages=HI, max_tokens=100)


def test_a_refused_stream_is_one_failed_event(door, emu, user):
    Budget.objects.create(scope="global", period="day", limit_usd=Decimal("0.0001"))
    events = list(door.stream(CallContext("chat", user.pk), messages=HI, max_tokens=100))
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert isinstance(events[0].error, BudgetExceeded)
    assert events[0].error.user_message.startswith("This site's daily Claude budget")
    assert requests_made(emu) == 0


def test_a_zero_budget_allows_nothing(door, emu):
    Budget.objects.create(scope="feature", feature="chat", period="month", limit_usd=0)
    with pytest.raises(BudgetExceeded):
        door.create(CallContext("chat"), messages=HI, max_tokens=5)
    assert requests_made(emu) == 0


def test_a_failed_call_gives_its_reservation_back(door, emu, user):
    emu.faults([{"kind": "status", "status": 400}])
    with pytest.raises(Exception):  # noqa: B017 - any refusal; the counter is the point
        door.create(CallContext("chat", user.pk), messages=HI, max_tokens=1000)
    assert spent(scope="user", period="day", user_id=user.pk) == 0
    assert spent(scope="feature", period="month", feature="chat") == 0


def test_spend_counters_can_be_rebuilt_from_the_ledger(door, emu, user):
    from claudeapp.claude.limits import rebuild_spend_counters

    door.create(CallContext("chat", user.pk), messages=HI, max_tokens=50)
    door.create(CallContext("rag", user.pk), messages=HI, max_tokens=50)
    before = spent(scope="user", period="month", user_id=user.pk)
    client = get_redis()
    names = list(client.scan_iter(match="*:claude:spend:*"))
    client.delete(*names)
    assert spent(scope="user", period="month", user_id=user.pk) == 0
    assert rebuild_spend_counters(client) == 8  # (user, 2 features, site) x (day, month)
    assert spent(scope="user", period="month", user_id=user.pk) == before > 0
    assert spent(scope="feature", period="day", feature="rag") == (
        UsageRecord.objects.get(feature="rag").cost_usd
    )


def test_a_feature_can_set_its_own_per_user_rate(door, emu, settings, user, rpm_window):
    settings.CLAUDE_USER_RPM = 1
    rpm_window(5)
    settings.CLAUDE_FEATURES = {**settings.CLAUDE_FEATURES, "bulk": {"user_rpm": 0}}
    for _ in range(3):
        door.create(CallContext("bulk", user.pk), messages=HI, max_tokens=5)
    door.create(CallContext("chat", user.pk), messages=HI, max_tokens=5)
    with pytest.raises(RateLimited):
        door.create(CallContext("chat", user.pk), messages=HI, max_tokens=5)
