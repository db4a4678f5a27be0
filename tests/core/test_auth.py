from __future__ import annotations

import pytest
from django.urls import reverse


@pytest.mark.parametrize("path", ["/", "/admin/"])
def test_pages_require_login(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_login_page_renders_in_the_base_layout(client, db):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="login-form"' in html
    assert "vendor/htmx/htmx.min.js" in html and "vendor/pico/pico.min.css" in html
    assert "cdn" not in html.lower()


def test_login_then_home_then_logout(client, user):
    from claudeapp.testing.fixtures import PASSWORD

    response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    home = client.get("/", follow=True)
    assert home.status_code == 200
    assert f"Log out {user.username}" in home.content.decode()
    client.post(reverse("logout"))
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused_with_a_message(client, user):
    response = client.post(reverse("login"), {"username": user.username, "password": "nope"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()


def test_metrics_hidden_without_token_or_staff(client, user, staff_user, settings):
    assert client.get("/metrics").status_code == 404
    client.force_login(user)
    assert client.get("/metrics").status_code == 404
    client.force_login(staff_user)
    assert client.get("/metrics").status_code == 200
    client.logout()
    settings.METRICS_TOKEN = "scrape-token-123"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-123").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404


def test_responses_carry_security_headers_and_a_request_id(client, db):
    response = client.get(reverse("login"))
    assert response["X-Frame-Options"] == "DENY"
    assert "script-src 'self' 'nonce-" in response["Content-Security-Policy"]
    assert len(response["X-Request-ID"]) >= 16
