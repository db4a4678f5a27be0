"""Picks the services a test run uses, before Django reads its settings.

Loaded as a pytest plugin with `-p claudeapp.testing.env` (pyproject's addopts), so it runs before
pytest-django imports the settings. PostgreSQL on 127.0.0.1:5432 when one answers (the test
database is `claudeapp_test`), SQLite in a file otherwise; the machine's Redis when one answers,
the bundled redis-server otherwise. `CLAUDEAPP_TEST_DB=sqlite` forces the SQLite path and
`CLAUDEAPP_TEST_REDIS=bundled` the bundled Redis.

Every run gets its own Celery queue, key prefixes and channel-layer prefix, so runs sharing one
Redis (developers, CI) never take each other's tasks or messages.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from claudeapp.testing.ports import free_port, port_open

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = uuid.uuid4().hex[:8]


def _postgres_reachable() -> bool:
    if not port_open("127.0.0.1", 5432):
        return False
    try:
        import psycopg

        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2
        ) as conn:
            conn.execute("SELECT 1")
        return True
    except Exception:
        return False


def _redis_reachable() -> bool:
    if not port_open("127.0.0.1", 6379):
        return False
    try:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping())
    except Exception:
        return False


def _start_bundled_redis() -> str:
    from claudeapp.embedded_redis import RedisServer

    directory = tempfile.mkdtemp(prefix="claudeapp-test-redis-")
    server = RedisServer(free_port(), directory).start()

    def _cleanup() -> None:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)

    atexit.register(_cleanup)
    return server.url


def configure() -> None:
    env = os.environ
    env.setdefault("DJANGO_SETTINGS_MODULE", "claudeapp.settings")
    env.setdefault("SECRET_KEY", f"test-secret-key-{RUN_ID}-not-for-production")
    env.setdefault("DEBUG", "0")
    # Live servers in tests speak plain HTTP on loopback.
    env.setdefault("SECURE_SSL_REDIRECT", "0")
    env.setdefault("SESSION_COOKIE_SECURE", "0")
    env.setdefault("CSRF_COOKIE_SECURE", "0")
    env.setdefault("SECURE_HSTS_SECONDS", "0")
    env.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
    env.setdefault("LOG_LEVEL", "WARNING")
    env.setdefault("STATIC_MANIFEST", "0")
    var_dir = ROOT / "var"
    var_dir.mkdir(exist_ok=True)
    (var_dir / "static").mkdir(exist_ok=True)  # whitenoise warns when STATIC_ROOT is missing
    if "MEDIA_ROOT" not in env:
        # Uploaded originals of this run, shared with the worker and live servers it starts.
        media = tempfile.mkdtemp(prefix="claudeapp-test-media-")
        env["MEDIA_ROOT"] = media
        atexit.register(shutil.rmtree, media, ignore_errors=True)
    # Test users log in often; the production hasher's cost buys nothing here.
    env.setdefault("PASSWORD_HASHERS", "django.contrib.auth.hashers.MD5PasswordHasher")

    if "DATABASE_URL" not in env:
        use_sqlite = env.get("CLAUDEAPP_TEST_DB", "").lower() == "sqlite"
        if not use_sqlite and _postgres_reachable():
            env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/postgres"
        else:
            env["DATABASE_URL"] = f"sqlite:///{var_dir / 'test-main.sqlite3'}"
    if env["DATABASE_URL"].startswith("sqlite"):
        # A file (not :memory:) so the live server and the Celery worker see the same data; a
        # bare name (TEST_DB_NAME=mine, as for PostgreSQL) goes under var/, not the checkout.
        name = env.get("TEST_DB_NAME") or f"test-{RUN_ID}.sqlite3"
        if not Path(name).is_absolute():
            name = str(var_dir / (name if name.endswith(".sqlite3") else name + ".sqlite3"))
        env["TEST_DB_NAME"] = name
        test_db = Path(name)
        atexit.register(
            lambda: [p.unlink(missing_ok=True) for p in test_db.parent.glob(test_db.name + "*")]
        )

    if "REDIS_URL" not in env:
        use_bundled = env.get("CLAUDEAPP_TEST_REDIS", "").lower() == "bundled"
        if not use_bundled and _redis_reachable():
            env["REDIS_URL"] = "redis://127.0.0.1:6379"
        else:
            env["REDIS_URL"] = _start_bundled_redis()
    env.setdefault("REDIS_KEY_PREFIX", f"claudeapp-test-{RUN_ID}")
    env.setdefault("CHANNELS_PREFIX", f"asgi-test-{RUN_ID}")
    env.setdefault("CELERY_QUEUE", f"claudeapp-test-{RUN_ID}")
    env.setdefault("CELERY_KEY_PREFIX", f"claudeapp-test-{RUN_ID}:")
    env.setdefault("HEALTHZ_WORKER_TIMEOUT", "1.0")

    # The emulator's port is chosen now, so settings can point the door at it; the `emulator`
    # fixture starts it there.
    if "ANTHROPIC_BASE_URL" not in env:
        port = free_port()
        env["CLAUDEAPP_TEST_EMULATOR_PORT"] = str(port)
        env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{port}"
        env["ANTHROPIC_API_KEY"] = "emulator-key"
        env["CLAUDE_EMULATOR"] = "1"
    env["CLAUDEAPP_TEST_RUN_ID"] = RUN_ID


configure()


def pytest_report_header(config) -> list[str]:  # noqa: ANN001 - pytest hook signature
    db = os.environ["DATABASE_URL"].split("://", 1)[0]
    return [
        f"claudeapp test run {RUN_ID}: database={db} "
        f"test_db={os.environ.get('TEST_DB_NAME', 'claudeapp_test')} "
        f"redis={os.environ['REDIS_URL']} claude={os.environ['ANTHROPIC_BASE_URL']}"
    ]
