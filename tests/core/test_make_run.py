"""`make run` on embedded defaults: no DATABASE_URL, no REDIS_URL, no API key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from claudeapp.testing.ports import free_port, port_open

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


@pytest.mark.slow
def test_make_run_serves_login_and_healthy_embedded_stack(tmp_path):
    ports = {name: free_port() for name in ("PORT", "EMULATOR_PORT", "EMBEDDED_REDIS_PORT")}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "REDIS_URL", "ANTHROPIC_", "CLAUDE", "CELERY_"))
        and key not in {"TEST_DB_NAME", "REDIS_KEY_PREFIX", "CHANNELS_PREFIX", "SECRET_KEY"}
        and not key.startswith("PYTEST")
    }
    env.update({k: str(v) for k, v in ports.items()})
    env["VAR_DIR"] = str(tmp_path / "var")
    env["DEBUG"] = "1"
    env["MAKEFLAGS"] = ""
    proc = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{ports['PORT']}"
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-3000:]
            try:
                status, body = _get(f"{base}/healthz")
                health = json.loads(body)
                if health["status"] == "ok":
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert health == {
            "status": "ok",
            "checks": {"database": "ok", "redis": "ok", "worker": "ok", "claude": "ok"},
            "claude_backend": "emulator",
        }
        status, body = _get(f"{base}/accounts/login/")
        assert status == 200 and b'id="login-form"' in body
        # The embedded parts really are the ones in use: SQLite under VAR_DIR, bundled Redis.
        assert (tmp_path / "var" / "db.sqlite3").exists()
        assert port_open("127.0.0.1", ports["EMBEDDED_REDIS_PORT"])
        assert port_open("127.0.0.1", ports["EMULATOR_PORT"])
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    for port in ports.values():
        assert not port_open("127.0.0.1", port), f"port {port} still open after Ctrl-C"
