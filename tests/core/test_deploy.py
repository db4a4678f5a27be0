"""The production shape: check --deploy, migrations, compose wiring (Docker can't run here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_deploy_is_clean_under_production_settings():
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DEBUG="0", SECRET_KEY="x" * 20 + "a-long-random-production-secret-key-value-123",
        ALLOWED_HOSTS="claudeapp.example.com", SECURE_SSL_REDIRECT="1",
        SESSION_COOKIE_SECURE="1", CSRF_COOKIE_SECURE="1", SECURE_HSTS_SECONDS="31536000",
        STATIC_MANIFEST="1",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = run_manage("check", DEBUG="0", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_migrations_are_complete():
    result = run_manage("makemigrations", "--check", "--dry-run", DEBUG="1")
    assert result.returncode == 0, result.stdout + result.stderr


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_every_service_with_a_healthcheck():
    services = load_compose()["services"]
    expected = {"postgres", "redis", "web", "worker", "beat", "emulator", "proxy"}
    assert expected <= set(services)
    for name in expected:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_compose_wires_web_to_its_database_redis_and_proxy():
    compose = load_compose()
    services = compose["services"]
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert (
            env["DATABASE_URL"].startswith("postgresql://")
            and "@postgres:5432/" in env["DATABASE_URL"]
        )
        assert env["REDIS_URL"] == "redis://redis:6379"
        assert services[name]["env_file"] == ".env"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert {"pgdata", "redisdata", "media"} <= set(compose["volumes"])
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy web:8000" in caddyfile
    assert any("Caddyfile" in v for v in services["proxy"]["volumes"])
    assert services["emulator"]["profiles"] == ["emulator"]
    assert "-m" in services["emulator"]["command"] and "emulator" in services["emulator"]["command"]


def test_dockerfile_collects_static_and_runs_asgi_as_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "collectstatic" in dockerfile
    assert "USER app" in dockerfile
    assert "claudeapp.asgi:application" in dockerfile
    # Every Python dependency is pinned.
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, line


def test_env_example_documents_every_setting_read_from_the_environment():
    import re

    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    read = set()
    for path in [ROOT / "claudeapp" / "settings.py"]:
        read |= set(re.findall(r"env_\w+\(\s*\"([A-Z_]+)\"", path.read_text()))
    assert read - documented == set()
