"""Admin: the usage list filters and shows totals with the cache-hit share."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from claudeapp.models import Budget, UsageRecord

pytestmark = pytest.mark.django_db


def row(user, **kw) -> UsageRecord:
    defaults = {"feature": "chat", "model_id": "claude-sonnet-5-5", "outcome": "ok", "attempts": 1}
    return UsageRecord.objects.create(user=user, **{**defaults, **kw})


def test_usage_list_filters_and_totals(admin_client, user, other_user):
    row(user, input_tokens=100, cache_read_tokens=300, output_tokens=10, cost_usd=Decimal("0.5"))
    row(user, input_tokens=100, cache_write_1h_tokens=500, output_tokens=10, cost_usd=Decimal("1"))
    row(other_user, feature="rag", input_tokens=1000, cost_usd=Decimal("2"))
    row(user, outcome="overloaded", attempts=3)

    page = admin_client.get("/admin/claudeapp/usagerecord/", {"feature": "chat", "outcome": "ok"})
    assert page.status_code == 200
    totals = page.context["usage_totals"]
    assert totals["calls"] == 2
    assert totals["cost"] == Decimal("1.5")
    assert totals["prompt_tokens"] == 1000  # 200 uncached + 300 read + 500 written
    assert totals["cache_hit_share"] == "30.0%"
    assert totals["calls_with_hit"] == 1
    html = page.content.decode()
    assert "Totals for the 2 calls selected" in html and "30.0%" in html

    by_user = admin_client.get("/admin/claudeapp/usagerecord/", {"user__id__exact": other_user.pk})
    assert by_user.context["usage_totals"]["cost"] == Decimal("2")
    by_model = admin_client.get(
        "/admin/claudeapp/usagerecord/", {"model_id": "claude-sonnet-5-5", "outcome": "overloaded"}
    )
    assert by_model.context["usage_totals"]["calls"] == 1
    today = timezone.now()
    dated = admin_client.get(  # the date hierarchy's day link
        "/admin/claudeapp/usagerecord/",
        {"created_at__year": today.year, "created_at__month": today.month,
         "created_at__day": today.day},
    )  # fmt: skip
    assert dated.context["usage_totals"]["calls"] == 4
    empty = admin_client.get("/admin/claudeapp/usagerecord/", {"created_at__year": 2001})
    assert empty.context["usage_totals"]["calls"] == 0


def test_admin_pages_for_the_door_tables(admin_client, seeded, user):
    Budget.objects.create(scope="user", user=user, period="day", limit_usd=Decimal("5"))
    for path in ("modelspec", "modelprice", "modelroute", "budget"):
        response = admin_client.get(f"/admin/claudeapp/{path}/")
        assert response.status_code == 200, path
    assert "claude-opus-5-5" in admin_client.get("/admin/claudeapp/modelspec/").content.decode()
    assert "0.0000" in admin_client.get("/admin/claudeapp/budget/").content.decode()
