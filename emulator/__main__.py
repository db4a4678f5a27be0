"""``python -m emulator``: serve the emulated Anthropic API until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import signal
import sys
from types import FrameType

import uvicorn

from . import DEFAULT_API_KEY
from .app import ConnectionDropped, create_app
from .control import Config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Config()
    p = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4010, help="0 picks a free port (printed)")
    p.add_argument("--api-key", default=DEFAULT_API_KEY)
    p.add_argument("--ttft-ms", type=int, default=defaults.ttft_ms)
    p.add_argument("--tokens-per-second", type=float, default=defaults.tokens_per_second,
                   help="0 streams unpaced")  # fmt: skip
    p.add_argument("--rate-limit-rpm", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-seconds", type=float, default=defaults.batch_seconds)
    p.add_argument("--state-dir", default=None, help="keep batches across restarts")
    p.add_argument("--log-level", default="warning")
    return p.parse_args(argv)


class _DropFilter(logging.Filter):
    """A deliberately dropped connection is a fault we injected, not a server error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


def _stamping_protocol() -> type | None:
    """httptools' protocol, stamping each request with the loop time its first bytes were read.

    Pacing counts from arrival; the ASGI task starts a loop turn later, which during a burst of
    arrivals can be milliseconds. ``None`` (plain uvicorn, app stamps itself) without httptools.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class StampingProtocol(HttpToolsProtocol):
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope["emulator.arrived"] = self.loop.time()  # type: ignore[typeddict-unknown-key]

    return StampingProtocol


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:  # type: ignore[override]
        await super().startup(sockets)
        if self.started and self.servers:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"emulator listening on http://{host}:{port}", flush=True)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn re-raises the signal after its graceful shutdown, so the process would die
        # "killed by SIGTERM"; a requested stop is a clean exit here (status 0).
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(
        ttft_ms=args.ttft_ms,
        tokens_per_second=args.tokens_per_second,
        batch_seconds=args.batch_seconds,
        rate_limit_rpm=args.rate_limit_rpm,
        seed=args.seed,
    )
    app = create_app(config, api_key=args.api_key, state_dir=args.state_dir)
    logging.getLogger("uvicorn.error").addFilter(_DropFilter())
    protocol = _stamping_protocol() if importlib.util.find_spec("httptools") else None
    server = _Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            http=protocol or "h11",
            loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
            lifespan="on",
            # The loopback check must see the real peer, never a forwarded header.
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=2,
            backlog=4096,
        )
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
