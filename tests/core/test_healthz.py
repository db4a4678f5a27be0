from __future__ import annotations

import json
import urllib.request

import pytest


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=15) as response:
        assert response.status == 200
        return json.load(response)


@pytest.mark.django_db(transaction=True)
def test_healthz_is_ok_with_database_redis_worker_and_claude(asgi_server, celery_worker, emulator):
    body = get_json(f"{asgi_server.url}/healthz")
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "worker": "ok", "claude": "ok"},
        "claude_backend": "emulator",
    }


@pytest.mark.django_db(transaction=True)
def test_healthz_is_degraded_when_its_redis_stops(asgi_server_factory, private_redis, emulator):
    server = asgi_server_factory(REDIS_URL=private_redis.url)
    before = get_json(f"{server.url}/healthz")
    assert before["checks"]["redis"] == "ok"

    private_redis.stop()
    after = get_json(f"{server.url}/healthz")
    assert after["status"] == "degraded"
    assert after["checks"]["redis"].startswith("error")
    assert after["checks"]["database"] == "ok"


def test_healthz_needs_no_login(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert set(response.json()["checks"]) == {"database", "redis", "worker", "claude"}


@pytest.mark.parametrize("backend_url, emulator_flag, expected", [
    ("", False, "anthropic"),
    ("https://api.anthropic.com/", False, "anthropic"),
    ("https://gateway.internal.example", False, "custom"),
    ("http://127.0.0.1:4010", True, "emulator"),
])  # fmt: skip
def test_claude_backend_label(settings, backend_url, emulator_flag, expected):
    from claudeapp.health import claude_backend

    settings.ANTHROPIC_BASE_URL = backend_url
    settings.CLAUDE_EMULATOR = emulator_flag
    assert claude_backend() == expected
