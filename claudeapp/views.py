from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from claudeapp import health


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": health.check_database(),
        "redis": health.check_redis(),
        "worker": health.check_worker(),
        "claude": health.check_claude(),
    }
    status = "ok" if all(value == "ok" for value in checks.values()) else "degraded"
    return JsonResponse(
        {"status": status, "checks": checks, "claude_backend": health.claude_backend()}
    )


@login_not_required
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition: a bearer METRICS_TOKEN, or a staff session."""
    token = settings.METRICS_TOKEN
    auth = request.headers.get("Authorization", "")
    by_token = bool(token) and hmac.compare_digest(auth, f"Bearer {token}")
    by_staff = request.user.is_authenticated and request.user.is_staff
    if not (by_token or by_staff):
        return HttpResponse(status=404)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)


def home(request: HttpRequest) -> HttpResponse:
    # Chat is what users come for: the home page is the conversation list.
    return redirect("conversations:list")
