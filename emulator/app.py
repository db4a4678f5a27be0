"""The ASGI application: routing, auth, headers, faults, pacing and the control endpoints.

Plain ASGI rather than a framework: the hot path (a paced stream) is one pre-rendered write per
token against absolute deadlines, and a dozen routes do not need more than a table.

Order of work for an API request: route -> body (413 over the route's limit) -> auth (401) ->
``anthropic-version`` (400) -> rate limit (429) -> faults (status, stall, disconnect) ->
JSON (400) -> handler (validation, reply) -> faults after the effect (drop_after_effect) ->
reply. Each reply carries ``request-id`` and the ``anthropic-ratelimit-*`` headers.

Pacing: the first token is due ``ttft_ms`` after the request arrived, token *i* (0-based)
``i / tokens_per_second`` later; the message_start preamble goes out at once. A non-streaming
call answers when its last token would have been streamed: ``ttft + (n - 1) / tps``, as a real
model takes as long to generate whether or not it streams. ``tokens_per_second <= 0`` is
unpaced.

Part 2 is wired in here: the prompt cache (:mod:`emulator.cache`, one :class:`PromptCache`
shared by live calls and batch lines) splits the input side of ``usage``; the Message Batches
routes serve a :class:`~emulator.batches.BatchStore` (``--state-dir`` keeps it across
restarts) whose lines run through :meth:`EmulatorApp.complete`, the same validate-and-generate
path as a live call, with ``batch_line`` faults taken per line. Thinking, tools, citations,
images and the obey trigger are part of the reply (:mod:`emulator.model`) and of validation
(:mod:`emulator.validation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from . import models_table
from .batches import BatchError, BatchStore, error_result
from .cache import PromptCache
from .control import Config, RateLimiter, Stats, is_loopback
from .errors import ApiError, invalid, new_id
from .faults import Fault, FaultStore
from .model import Reply, generate_reply
from .pacing import DROP, Plan, build_plan, run_plan
from .sse import render
from .validation import Checked, check_version, validate_count_tokens, validate_create

__all__ = ["DROP", "EmulatorApp", "Request", "Response", "Route", "Stream", "create_app"]

MESSAGES_MAX_BODY = 32 * 1024 * 1024
BATCHES_PATH = "/v1/messages/batches"
# A batch line is a Messages request: batch_line faults match either path.
BATCH_LINE_PATHS = (BATCHES_PATH, "/v1/messages")
# Request headers never stored with a batch (its headers are kept to match batch_line faults).
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie", "proxy-authorization"})
ORGANIZATION_ID = "00000000-0000-4000-8000-00000000e4a1"

GENERIC_FAULTS = frozenset({"status", "stall", "disconnect", "drop_after_effect"})
STREAM_ONLY_FAULTS = frozenset({"midstream_error", "early_end"})
MESSAGE_FAULTS = GENERIC_FAULTS | STREAM_ONLY_FAULTS | {"refusal", "invalid_output"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    client: str | None
    request_id: str
    arrived: float  # event-loop time
    base_url: str = ""  # scheme://host as the client addressed us (for absolute results_url)
    params: dict[str, str] = field(default_factory=dict)
    json: object = None
    json_error: str | None = None
    version: str = ""
    fault: Fault | None = None
    receive: Callable | None = None

    async def wait(self, seconds: float) -> None:
        """Sleep, but give up with :class:`ClientGone` as soon as the client disconnects.

        So a stalled or paced call whose client timed out neither runs on for nobody nor
        shows up in the stats of whatever test runs next.
        """
        if seconds <= 0:
            return
        if self.receive is None:
            await asyncio.sleep(seconds)
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while (left := until - loop.time()) > 0:
            recv = asyncio.ensure_future(self.receive())
            try:
                done, _ = await asyncio.wait({recv}, timeout=left)
            finally:
                if not recv.done():
                    recv.cancel()
            if done:
                if recv.result()["type"] == "http.disconnect":
                    raise ClientGone
                # Anything else (no server should send it) must not make us spin.
                await asyncio.sleep(max(0.0, until - loop.time()))
                return


class CpuQueue:
    """Runs requests' CPU-heavy work (validation, generation, rendering) one job at a time.

    Jobs run back to back for at most :attr:`BUDGET` seconds per event-loop turn; then the loop
    gets a turn to poll sockets and fire token timers. So a burst of 200 arrivals neither
    starves the timers of running streams for long nor leaves later arrivals unread.
    """

    BUDGET = 0.004

    def __init__(self) -> None:
        self._jobs: deque[tuple[Callable, tuple, asyncio.Future]] = deque()
        self._wakeup: asyncio.Future | None = None
        self._worker: asyncio.Task | None = None

    async def run(self, fn: Callable, *args: object) -> object:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        fut = loop.create_future()
        self._jobs.append((fn, args, fut))
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        return await fut

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                self._wakeup = loop.create_future()
                await self._wakeup
            until = loop.time() + self.BUDGET
            while self._jobs and loop.time() < until:
                fn, args, fut = self._jobs.popleft()
                if fut.done():
                    continue
                try:
                    fut.set_result(fn(*args))
                except Exception as exc:  # the request task re-raises it
                    fut.set_exception(exc)
            await asyncio.sleep(0)  # one loop turn for I/O and timers


class ClientGone(Exception):
    """The client disconnected before we answered."""


@dataclass
class Stream:
    """A paced SSE body (see :mod:`emulator.pacing`)."""

    plan: Plan


@dataclass
class Response:
    status: int = 200
    # bytes; a paced Stream; or an async iterator of bytes (DROP drops the connection there)
    body: bytes | Stream | AsyncIterator[object] = b""
    content_type: str = "application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @classmethod
    def json(cls, data: object, status: int = 200) -> Response:
        return cls(status, json.dumps(data).encode())


Handler = Callable[["EmulatorApp", Request], Awaitable[Response]]


@dataclass
class Route:
    method: str
    pattern: re.Pattern
    handler: Handler
    max_body: int | Callable[[], int] = MESSAGES_MAX_BODY  # a callable: read per request
    fault_kinds: frozenset[str] = GENERIC_FAULTS
    streams: bool = False  # whether ``"stream": true`` in the body makes it stream


def _compile(pattern: str) -> re.Pattern:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")


class EmulatorApp:
    def __init__(
        self,
        config: Config | None = None,
        *,
        api_key: str = "emulator-key",
        state_dir: str | None = None,
    ) -> None:
        self.config = config or Config()
        self.api_key = api_key
        self.state_dir = state_dir
        self.stats = Stats()
        self.faults = FaultStore(self.config.seed)
        self.ratelimit = RateLimiter()
        self.cpu = CpuQueue()
        self.routes: list[Route] = []
        self.cache = PromptCache()
        self.batches = BatchStore(
            state_dir,
            self.config.batch_seconds,
            process=self._process_batch_line,
            line_fault=self._batch_line_fault,
        )
        self._apply_config()
        self.stats.sections["cache"] = self.cache.stats
        self.stats.sections["batches"] = self.batches.stats
        self.add_route("POST", "/v1/messages", _messages, fault_kinds=MESSAGE_FAULTS, streams=True)
        self.add_route("POST", "/v1/messages/count_tokens", _count_tokens)
        self.add_route("GET", "/v1/models", _list_models)
        self.add_route("GET", "/v1/models/{model_id}", _get_model)
        self.add_route("POST", BATCHES_PATH, _batch_create,
                       max_body=lambda: self.batches.max_body_bytes)  # fmt: skip
        self.add_route("GET", BATCHES_PATH, _batch_list)
        self.add_route("GET", BATCHES_PATH + "/{batch_id}", _batch_retrieve)
        self.add_route("DELETE", BATCHES_PATH + "/{batch_id}", _batch_delete)
        self.add_route("POST", BATCHES_PATH + "/{batch_id}/cancel", _batch_cancel)
        self.add_route("GET", BATCHES_PATH + "/{batch_id}/results", _batch_results)

    # --- extension API ------------------------------------------------------------------------

    def add_route(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        max_body: int | Callable[[], int] = MESSAGES_MAX_BODY,
        fault_kinds: frozenset[str] = GENERIC_FAULTS,
        streams: bool = False,
    ) -> None:
        """Serve ``method pattern`` (``{name}`` captures one path segment into ``req.params``)."""
        self.routes.append(
            Route(method.upper(), _compile(pattern), handler, max_body, fault_kinds, streams)
        )

    def _apply_config(self) -> None:
        """Push run-time settings to the parts that keep their own copy."""
        self.batches.batch_seconds = self.config.batch_seconds
        self.batches.max_requests = self.config.batch_max_requests
        self.batches.max_body_bytes = self.config.batch_max_bytes

    def reset(self) -> None:
        self.faults.reset(self.config.seed)
        self.stats.reset()
        self.ratelimit = RateLimiter()
        self.cache.reset()
        self.batches.reset()

    def input_usage(self, body: dict, checked: Checked) -> dict:
        """Usage fields of the input side, split by the prompt cache (which this reads and
        writes: call it once per request that runs, never for count_tokens)."""
        usage = self.cache.apply(
            checked.spec.id,
            checked.segments,
            body.get("cache_control"),
            checked.spec.min_cacheable_tokens,
        )
        return usage.usage_fields()

    def build_reply(self, body: dict, checked: Checked, fault: Fault | None = None) -> Reply:
        kind = fault.kind if fault else None
        return generate_reply(
            body,
            self.config.seed,
            refusal=fault.spec if kind == "refusal" else None,
            invalid_output=kind == "invalid_output",
        )

    def complete(
        self, body: object, version: str = "2026-10-21", *, service_tier: str = "standard"
    ) -> dict:
        """A non-streaming Message for ``body`` with no pacing and no faults (batch lines).

        Raises :class:`ApiError` exactly as the live endpoint would.
        """
        checked = validate_create(body, version)
        assert isinstance(body, dict)
        if body.get("stream"):
            raise invalid("stream: streaming is not supported for requests in a message batch")
        usage_in = self.input_usage(body, checked)
        reply = self.build_reply(body, checked)
        return _message_json(body, reply, usage_in, new_id("msg_01", 22), service_tier)

    def _process_batch_line(self, custom_id: str, params: dict, context: dict) -> dict:
        """One batch line, as the batch store asks for it (from a worker thread)."""
        try:
            message = self.complete(
                params, context.get("version", "2026-10-21"), service_tier="batch"
            )
        except ApiError as err:
            return error_result(err.error_type, err.message)
        return {"type": "succeeded", "message": message}

    def _batch_line_fault(self, custom_id: str, params: dict, context: dict) -> str | None:
        model = params.get("model") if isinstance(params, dict) else None
        fault = self.faults.take(
            BATCH_LINE_PATHS,
            model if isinstance(model, str) else None,
            context.get("headers") or {},
            {"batch_line"},
        )
        if fault is None:
            return None
        self.stats.faults[fault.kind] += 1
        return str(fault.spec.get("result", "errored"))

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Batches end on time in the background, so stats and polls see them end.
                self.batches.start_worker()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.batches.stop_worker)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict, receive: Callable, send: Callable) -> None:
        # When the server stamped the request as its bytes were read (see __main__), use that;
        # else stamp now and let every request that arrived together do the same before any of
        # them does real work, so a burst of streams starts its deadlines when it came in.
        loop_time = scope.get("emulator.arrived")
        if loop_time is None:
            loop_time = asyncio.get_running_loop().time()
            await asyncio.sleep(0)
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        client = scope.get("client")
        server = scope.get("server")
        host = headers.get("host") or (f"{server[0]}:{server[1]}" if server else "localhost")
        req = Request(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            headers=headers,
            client=client[0] if client else None,
            request_id=new_id("req_011C"),
            arrived=loop_time,
            base_url=f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}",
            receive=receive,
        )
        if req.path.startswith("/_emulator/"):
            await self._control(req, receive, send)
            return
        await self._api(req, receive, send)

    async def _read_body(self, receive: Callable, limit: int) -> bytearray | None:
        """The request body, or ``None`` when it is over ``limit`` (the rest is drained).

        One growing buffer rather than a list of chunks joined at the end, so a 256 MB batch
        create is held once, not twice.
        """
        body = bytearray()
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size <= limit:
                body += chunk
        if size > limit:
            return None
        return body

    def _route(self, req: Request) -> Route | ApiError:
        allowed = False
        for route in self.routes:
            m = route.pattern.match(req.path)
            if m is None:
                continue
            if route.method == req.method:
                req.params = m.groupdict()
                return route
            allowed = True
        if allowed:
            return ApiError(405, f"Method {req.method} not allowed for {req.path}",
                            error_type="invalid_request_error")  # fmt: skip
        return ApiError(404, f"Not found: {req.method} {req.path}")

    async def _api(self, req: Request, receive: Callable, send: Callable) -> None:
        if _retry_number(req.headers, "x-stainless-retry-count") or _retry_number(
            req.headers, "x-retry-attempt"
        ):
            self.stats.retries += 1
        route = self._route(req)
        limit = route.max_body if isinstance(route, Route) else MESSAGES_MAX_BODY
        if callable(limit):
            limit = limit()
        body = await self._read_body(receive, limit)
        try:
            if isinstance(route, ApiError):
                raise route
            if body is None:
                raise ApiError(
                    413, f"Request exceeds the maximum allowed number of bytes ({limit})."
                )
            self._authenticate(req)
            req.version = check_version(req.headers.get("anthropic-version"))
            wait = self.ratelimit.admit(self.config.rate_limit_rpm)
            if wait is not None:
                raise ApiError(
                    429,
                    f"This request would exceed your organization's rate limit of "
                    f"{self.config.rate_limit_rpm} requests per minute. Please try again later.",
                    headers={"retry-after": str(max(1, int(wait + 0.999)))},
                )
            if body and req.method in ("POST", "PUT", "PATCH"):
                try:
                    # Decoded here so the bytes can go before parsing: a 256 MB batch create
                    # is never held as bytes, text and objects at once.
                    text = body.decode()
                    del body
                    req.json = json.loads(text)
                except (ValueError, UnicodeDecodeError) as exc:
                    req.json_error = f"There was an error parsing the body: {exc}"
                text = ""
            body = None  # the parsed JSON is all that is needed from here on
            stream = route.streams and isinstance(req.json, dict) and req.json.get("stream") is True
            kinds = route.fault_kinds if stream else route.fault_kinds - STREAM_ONLY_FAULTS
            model = req.json.get("model") if isinstance(req.json, dict) else None
            fault = self.faults.take(
                req.path, model if isinstance(model, str) else None, req.headers, kinds
            )
            req.fault = fault
            if fault is not None:
                self.stats.faults[fault.kind] += 1
                if fault.kind == "status":
                    raise _status_fault(fault)
                if fault.kind == "stall" and (not stream or fault.after_tokens is None):
                    await req.wait(int(fault.spec["ms"]) / 1000)
                if fault.kind == "disconnect" and not stream:
                    self._count(req, "dropped")
                    await _drop(send, receive)
                    return
            if req.json_error:
                raise invalid(req.json_error)
            response = await route.handler(self, req)
            if fault is not None and fault.kind == "drop_after_effect":
                self._count(req, "dropped")
                await _drop(send, receive)
                return
        except ApiError as err:
            response = Response(err.status, err.body_bytes(req.request_id))
            response.headers = [(k.encode(), v.encode()) for k, v in err.headers.items()]
        except ClientGone:
            self._count(req, "499")  # nginx's "client closed request"
            return
        self._count(req, str(response.status))
        await self._send(req, response, send, receive)

    def _count(self, req: Request, outcome: str) -> None:
        self.stats.requests[f"{req.method} {req.path} {outcome}"] += 1

    def _authenticate(self, req: Request) -> None:
        key = req.headers.get("x-api-key")
        auth = req.headers.get("authorization")
        if key is None and auth is None:
            raise ApiError(401, "x-api-key header is required")
        if key is not None and key == self.api_key:
            return
        if auth is not None and auth == f"Bearer {self.api_key}":
            return
        raise ApiError(401, "invalid x-api-key" if key is not None else "invalid bearer token")

    def _headers(self, req: Request, response: Response) -> list[tuple[bytes, bytes]]:
        out = [
            (b"content-type", response.content_type.encode()),
            (b"request-id", req.request_id.encode()),
            (b"anthropic-organization-id", ORGANIZATION_ID.encode()),
        ]
        out += self.ratelimit.headers(self.config.rate_limit_rpm)
        out += response.headers
        return out

    async def _send(
        self, req: Request, response: Response, send: Callable, receive: Callable
    ) -> None:
        headers = self._headers(req, response)
        body = response.body
        if isinstance(body, bytes):
            headers.append((b"content-length", str(len(body)).encode()))
            await send(
                {"type": "http.response.start", "status": response.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        headers.append((b"cache-control", b"no-cache"))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if isinstance(body, Stream):
            outcome = await run_plan(body.plan, send, receive, self.stats.stream_lateness.append)
        else:
            outcome = await _iterate(body, send)
        if outcome == "drop":
            await _drop(send, receive)
        elif outcome == "done":
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    # --- control endpoints --------------------------------------------------------------------

    async def _control(self, req: Request, receive: Callable, send: Callable) -> None:
        body = await self._read_body(receive, 1024 * 1024)
        try:
            if not is_loopback(req.client):
                raise ApiError(
                    403, "The emulator's control endpoints are for loopback clients only."
                )
            data: object = None
            if body:
                try:
                    data = json.loads(body)
                except ValueError as exc:
                    raise invalid(f"There was an error parsing the body: {exc}") from exc
            response = self._control_action(req, data)
        except ApiError as err:
            response = Response(err.status, err.body_bytes(req.request_id))
        except ValueError as exc:
            response = Response(400, invalid(str(exc)).body_bytes(req.request_id))
        await self._send(req, response, send, receive)

    def _control_action(self, req: Request, data: object) -> Response:
        action = (req.method, req.path)
        if action == ("GET", "/_emulator/health"):
            return Response.json({"status": "ok"})
        if action == ("GET", "/_emulator/config"):
            return Response.json(self.config.as_dict())
        if action == ("POST", "/_emulator/config"):
            seed = self.config.seed
            self.config.update(data if data is not None else {})
            self._apply_config()
            if self.config.seed != seed:
                self.faults.reset(self.config.seed)
            return Response.json(self.config.as_dict())
        if action == ("POST", "/_emulator/faults"):
            if not isinstance(data, dict) or not isinstance(data.get("faults"), list):
                raise ValueError('body must be {"faults": [fault, ...]}')
            return Response.json({"queued": self.faults.add(data["faults"])})
        if action == ("GET", "/_emulator/faults"):
            return Response.json({"faults": self.faults.pending()})
        if action == ("DELETE", "/_emulator/faults"):
            self.faults.clear()
            return Response.json({"queued": 0})
        if action == ("GET", "/_emulator/stats"):
            return Response.json(self.stats.snapshot())
        if action == ("POST", "/_emulator/reset"):
            self.reset()
            return Response.json({"reset": True})
        raise ApiError(404, f"Not found: {req.method} {req.path}")


# --- faults and connection handling ---------------------------------------------------------------


async def _iterate(body: AsyncIterator[object], send: Callable) -> str:
    cycle = getattr(send, "__self__", None)  # uvicorn's per-request cycle: knows disconnects
    try:
        async for chunk in body:
            if chunk is DROP:
                return "drop"
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if getattr(cycle, "disconnected", False):
                return "gone"  # the client went away: stop generating for nobody
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
    return "done"


def _status_fault(fault: Fault) -> ApiError:
    spec = fault.spec
    headers: dict[str, str] = {}
    if spec.get("retry_after") is not None:
        headers["retry-after"] = _num_text(spec["retry_after"])
    if spec.get("retry_after_ms") is not None:
        headers["retry-after-ms"] = _num_text(spec["retry_after_ms"])
    if spec.get("should_retry") is not None:
        headers["x-should-retry"] = "true" if spec["should_retry"] else "false"
    return ApiError(
        int(spec.get("status", 500)),
        spec.get("message"),
        error_type=spec.get("error_type"),
        error_code=spec.get("error_code"),
        headers=headers,
    )


def _retry_number(headers: dict[str, str], name: str) -> int:
    try:
        return int(headers.get(name, "0").strip() or 0)
    except ValueError:
        return 0


def _num_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class ConnectionDropped(Exception):
    """Raised to make the server close the connection when the transport is not reachable."""


async def _drop(send: Callable, receive: Callable) -> None:
    """Close the connection now: whatever was written is flushed, nothing more is.

    A stream cut this way has no terminating chunk, so the client sees a broken chunked body
    (httpx2.RemoteProtocolError); before the response it sees a server disconnect.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionDropped
    transport.close()
    # Wait until the server has seen the connection go, so it neither logs an incomplete
    # response nor tries to send a 500 on a closed socket.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(2):
            while (await receive())["type"] != "http.disconnect":
                pass


# --- handlers -----------------------------------------------------------------------------------


def _body_dict(req: Request) -> dict:
    if not isinstance(req.json, dict):
        raise invalid("Request body must be a JSON object")
    return req.json


def _message_json(
    body: dict, reply: Reply, usage_in: dict, message_id: str, service_tier: str = "standard"
) -> dict:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "stop_details": reply.stop_details,
        "container": None,
        "usage": {
            **usage_in,
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"thinking_tokens": reply.thinking_tokens},
            "service_tier": service_tier,
            "inference_geo": None,
            "speed": body.get("speed"),
        },
    }


async def _messages(app: EmulatorApp, req: Request) -> Response:
    response, deadline = await app.cpu.run(_messages_work, app, req)
    if deadline is not None:
        # A non-streaming reply waits for its generation time, outside the CPU lock.
        await req.wait(deadline - asyncio.get_running_loop().time())
    return response


def _messages_work(app: EmulatorApp, req: Request) -> tuple[Response, float | None]:
    body = _body_dict(req)
    checked = validate_create(body, req.version)
    fault = req.fault
    usage_in = app.input_usage(body, checked)
    reply = app.build_reply(body, checked, fault)
    app.ratelimit.record_tokens(checked.input_tokens, reply.output_tokens)
    message = _message_json(body, reply, usage_in, new_id("msg_01", 22))
    ttft = app.config.ttft_ms / 1000
    tps = app.config.tokens_per_second
    if not body.get("stream"):
        n = reply.streamed_tokens
        deadline = req.arrived + ttft + (max(0, n - 1) / tps if tps > 0 else 0)
        return Response.json(message), deadline

    start = {
        **{k: v for k, v in message.items() if k != "usage"},
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "stop_details": None,
        "usage": {
            **usage_in,
            "output_tokens": min(1, reply.output_tokens),
            "service_tier": "standard",
        },
    }
    delta_usage = {
        "input_tokens": usage_in["input_tokens"],
        "cache_creation_input_tokens": usage_in.get("cache_creation_input_tokens", 0),
        "cache_read_input_tokens": usage_in.get("cache_read_input_tokens", 0),
        "output_tokens": reply.output_tokens,
    }
    if reply.thinking_tokens:
        delta_usage["output_tokens_details"] = {"thinking_tokens": reply.thinking_tokens}
    rendered = render(start, reply, delta_usage)
    plan = build_plan(rendered, req.arrived, ttft, tps, fault, req.request_id)
    return Response(200, Stream(plan), content_type="text/event-stream; charset=utf-8"), None


async def _count_tokens(app: EmulatorApp, req: Request) -> Response:
    return await app.cpu.run(_count_tokens_work, app, req)


def _count_tokens_work(app: EmulatorApp, req: Request) -> Response:
    body = _body_dict(req)
    checked = validate_count_tokens(body, req.version)
    return Response.json({"input_tokens": checked.input_tokens})


async def _list_models(app: EmulatorApp, req: Request) -> Response:
    try:
        limit = int(req.query.get("limit", 20))
    except ValueError:
        raise invalid("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise invalid("limit: Input should be between 1 and 1000")
    ids = [m.id for m in models_table.MODELS]
    after, before = req.query.get("after_id"), req.query.get("before_id")
    if after is not None:
        if after not in ids:
            raise invalid(f"after_id: unknown model id {after}")
        start = ids.index(after) + 1
        window = ids[start : start + limit]
        has_more = start + limit < len(ids)
    elif before is not None:
        if before not in ids:
            raise invalid(f"before_id: unknown model id {before}")
        end = ids.index(before)
        window = ids[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        window = ids[:limit]
        has_more = limit < len(ids)
    data = [models_table.BY_ID[i].info() for i in window]
    return Response.json(
        {
            "data": data,
            "has_more": has_more,
            "first_id": window[0] if window else None,
            "last_id": window[-1] if window else None,
        }
    )


async def _get_model(app: EmulatorApp, req: Request) -> Response:
    model_id = req.params["model_id"]
    spec = models_table.lookup(model_id)
    if spec is None:
        raise ApiError(404, f"model: {model_id}")
    return Response.json(spec.info())


# --- message batches (reference section E) ------------------------------------------------------


async def _store_call(fn: Callable, *args: object, **kw: object) -> object:
    """Run a (blocking) batch store method in a thread; its errors become API errors."""
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except BatchError as err:
        raise ApiError(err.status, err.message, error_type=err.error_type) from None


async def _batch_create(app: EmulatorApp, req: Request) -> Response:
    body = _body_dict(req)
    for key in body:
        if key != "requests":
            raise invalid(f"{key}: Extra inputs are not permitted")
    if "requests" not in body:
        raise invalid("requests: Field required")
    # Kept with the batch: its lines are validated under this version, and batch_line faults
    # can match these headers (never the credentials).
    headers = {k: v for k, v in req.headers.items() if k not in SECRET_HEADERS}
    context = {"version": req.version, "headers": headers}
    batch = await _store_call(
        app.batches.create, body["requests"], base_url=req.base_url, context=context
    )
    return Response.json(batch)


async def _batch_list(app: EmulatorApp, req: Request) -> Response:
    try:
        limit = int(req.query.get("limit", 20))
    except ValueError:
        raise invalid("limit: Input should be a valid integer") from None
    page = await _store_call(
        app.batches.list,
        limit,
        req.query.get("after_id"),
        req.query.get("before_id"),
        base_url=req.base_url,
    )
    return Response.json(page)


async def _batch_retrieve(app: EmulatorApp, req: Request) -> Response:
    batch_id = req.params["batch_id"]
    return Response.json(await _store_call(app.batches.retrieve, batch_id, base_url=req.base_url))


async def _batch_cancel(app: EmulatorApp, req: Request) -> Response:
    batch_id = req.params["batch_id"]
    return Response.json(await _store_call(app.batches.cancel, batch_id, base_url=req.base_url))


async def _batch_delete(app: EmulatorApp, req: Request) -> Response:
    return Response.json(await _store_call(app.batches.delete, req.params["batch_id"]))


async def _batch_results(app: EmulatorApp, req: Request) -> Response:
    """The results JSONL, streamed in chunks of whole lines as the store reads them."""
    chunks = await _store_call(app.batches.results_chunks, req.params["batch_id"])
    assert isinstance(chunks, Iterator)

    async def body() -> AsyncIterator[bytes]:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk

    return Response(200, body(), content_type="application/binary")


def create_app(
    config: Config | None = None,
    *,
    api_key: str = "emulator-key",
    state_dir: str | None = None,
) -> EmulatorApp:
    return EmulatorApp(config, api_key=api_key, state_dir=state_dir)


# Run by ``uvicorn emulator.app:app`` too (default settings).
def __getattr__(name: str) -> object:
    if name == "app":
        return create_app()
    raise AttributeError(name)
