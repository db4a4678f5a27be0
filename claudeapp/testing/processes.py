"""Real processes for tests and benches: a Celery worker and an ASGI server on the test database."""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from claudeapp.testing.ports import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "var" / "test-logs"


def database_url_for_children() -> str:
    """The URL of the database Django is using now (the test database, once it exists)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgresql://{auth}{host}:{port}/{db['NAME']}"


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for_children()
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.pop("PYTEST_CURRENT_TEST", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class ChildProcess(abc.ABC):
    """A subprocess whose output goes to var/test-logs/<name>.log (read it when a test fails)."""

    name = "child"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = LOG_DIR / f"{self.name}-{uuid.uuid4().hex[:6]}.log"

    @abc.abstractmethod
    def command(self) -> list[str]: ...

    @abc.abstractmethod
    def ready(self) -> None: ...

    def start(self) -> ChildProcess:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.command(),
            cwd=ROOT,
            env=self.env or child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            self.ready()
        except Exception:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; log:\n{self.log_tail()}") from None
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group (a prefork worker's children too)."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        self.process = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class CeleryWorker(ChildProcess):
    name = "celery-worker"

    def __init__(
        self, env: dict[str, str] | None = None, concurrency: int = 2, pool: str = "prefork"
    ) -> None:
        super().__init__(env)
        self.concurrency = concurrency
        self.pool = pool
        self.node = f"test-{uuid.uuid4().hex[:8]}@localhost"

    def command(self) -> list[str]:
        queue = (self.env or os.environ).get("CELERY_QUEUE", "claudeapp")
        return [
            sys.executable, "-m", "celery", "-A", "claudeapp", "worker",
            "-Q", queue, "-n", self.node, "-P", self.pool, "-c", str(self.concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-l", "INFO", "-I", "claudeapp.testing.tasks",
        ]  # fmt: skip

    def ready(self, timeout: float = 60.0) -> None:
        from claudeapp.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError("worker exited")
            if app.control.ping(destination=[self.node], timeout=0.5):
                return
        raise TimeoutError("worker did not answer a ping")


class AsgiServer(ChildProcess):
    name = "asgi-server"

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None) -> None:
        super().__init__(env)
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "claudeapp.asgi:application",
            "--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "off",
            "--log-level", "warning", "--ws", "websockets", "--no-access-log",
        ]  # fmt: skip

    def ready(self) -> None:
        wait_for_port("127.0.0.1", self.port, timeout=60, proc=self.process)
