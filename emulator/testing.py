"""Start and drive an emulator process (for tests, benches and the Django test fixtures).

No pytest import here: ``emulator.pytest_plugin`` wraps this for pytest, benches use it as is.

    with EmulatorProcess(args=["--ttft-ms", "0"]) as emu:
        client = emu.client()
        emu.faults([{"kind": "status", "status": 529}])
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import DEFAULT_API_KEY

__all__ = ["EmulatorError", "EmulatorProcess"]

_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"emulator listening on (http://\S+?):(\d+)")


class EmulatorError(RuntimeError):
    pass


class EmulatorProcess:
    """One ``python -m emulator`` subprocess on loopback.

    ``port=None`` lets the emulator pick a free port the first time (it prints it); later
    ``start()`` calls reuse that port, so clients built earlier keep working after a restart.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        python: str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.args = list(args)
        self.port = port
        self.host = host
        self.python = python or sys.executable
        self.env = env
        self.startup_timeout = startup_timeout
        self.api_key = _arg_value(self.args, "--api-key") or DEFAULT_API_KEY
        self._proc: subprocess.Popen | None = None
        self._log_path: str | None = None
        self._log_file: Any = None
        # The config the process started with (what ``restore_config`` goes back to).
        self.initial_config: dict | None = None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmulatorError("the emulator has not been started yet")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """What the process wrote to stdout/stderr so far (for failure messages)."""
        if not self._log_path:
            return ""
        try:
            return Path(self._log_path).read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> EmulatorProcess:
        if self.running:
            return self
        cmd = [self.python, "-m", "emulator", "--host", self.host, "--port", str(self.port or 0)]
        cmd += self.args
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        fd, self._log_path = tempfile.mkstemp(prefix="emulator-", suffix=".log")
        os.close(fd)
        self._log_file = open(self._log_path, "wb")  # noqa: SIM115 (closed in stop())
        # The command is this interpreter running our own module: no untrusted input.
        self._proc = subprocess.Popen(  # noqa: S603
            cmd, stdout=self._log_file, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self.log()
                self._cleanup()
                raise EmulatorError(f"emulator exited at startup:\n{log}")
            m = _LISTENING.search(self.log())
            if m:
                self.port = int(m.group(2))
                if self._health():
                    if self.initial_config is None:
                        self.initial_config = self.config()
                    return self
            time.sleep(0.05)
        log = self.log()
        self.stop()
        raise EmulatorError(f"emulator did not start within {self.startup_timeout}s:\n{log}")

    def stop(self, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout``); its exit code."""
        proc = self._proc
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            code = proc.returncode
        self._cleanup()
        return code

    def _cleanup(self) -> None:
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._log_path:
            try:
                os.unlink(self._log_path)
            except OSError:
                pass
            self._log_path = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control endpoints ------------------------------------------------------------------

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        # Always http://<loopback host>:<port>, built here, never a caller's URL.
        req = urllib.request.Request(  # noqa: S310
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise EmulatorError(f"{method} {path} -> {err.code}: {detail}") from None

    def _health(self) -> bool:
        try:
            return self._call("GET", "/_emulator/health") == {"status": "ok"}
        except (OSError, EmulatorError):
            return False

    def config(self, **changes: Any) -> dict:
        """Change run-time settings (any subset); returns the whole config."""
        if changes:
            return self._call("POST", "/_emulator/config", changes)
        return self._call("GET", "/_emulator/config")

    def restore_config(self) -> dict:
        """Back to the settings the process first started with."""
        return self.config(**(self.initial_config or {}))

    def faults(self, faults: list[dict]) -> dict:
        return self._call("POST", "/_emulator/faults", {"faults": list(faults)})

    def pending_faults(self) -> list[dict]:
        return self._call("GET", "/_emulator/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset")

    def stats(self) -> dict:
        return self._call("GET", "/_emulator/stats")

    # --- SDK clients (strict validation, as the issue asks) -----------------------------------

    def client(self, **kw: Any) -> Any:
        import anthropic

        kw.setdefault("api_key", self.api_key)
        kw.setdefault("base_url", self.url)
        kw.setdefault("_strict_response_validation", True)
        return anthropic.Anthropic(**kw)

    def async_client(self, **kw: Any) -> Any:
        import anthropic

        kw.setdefault("api_key", self.api_key)
        kw.setdefault("base_url", self.url)
        kw.setdefault("_strict_response_validation", True)
        return anthropic.AsyncAnthropic(**kw)


def _arg_value(args: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None
