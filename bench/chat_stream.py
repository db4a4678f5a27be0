"""Chat streaming bench: what the chat adds on top of a direct SDK stream, measured in one run.

    .venv/bin/python bench/chat_stream.py            # a, b and c
    .venv/bin/python bench/chat_stream.py --parts a --n 300

It starts its own emulator (paced: --ttft-ms 200, --tokens-per-second 80), its own uvicorn
serving the whole app (the same command as the Procfile's `web`, with WEB_CONCURRENCY
processes as docker-compose runs it: --web-workers, default one per CPU), on its own database (a
PostgreSQL database `claudeapp_bench_chat` when PostgreSQL answers on 127.0.0.1:5432, else a
SQLite file under var/) and Redis keys of its own. The app's per-user and global request limits
are switched off for the run (CLAUDE_USER_RPM=0, CLAUDE_GLOBAL_RPM=0, CLAUDE_MAX_CONCURRENT=0):
the bench measures the chat, not the limits; the Redis checks themselves still run.

Both sides send the same request (Claude Haiku 5.5, thinking off, one user turn, no system
prompt) to the same emulator, through the same transport (the SDK's aiohttp client, as the
door). "First visible text" is, for the SDK, the first text_delta event; for the chat, the
first websocket frame that adds reply text to the page.

(a) one at a time, interleaved (SDK, chat, SDK, chat ...), n pairs after a warm-up: the added
    time to first visible text (chat minus SDK), p50 and p95 (difference of the percentiles,
    and the percentiles of the paired differences).
(b) 64 conversations at once (several rounds), against 64 SDK streams at once: added p99, errors,
    truncated replies.
(c) 200 streams at once: each reply's duration as the page sees it (send -> final text shown)
    over its ideal paced duration (ttft + (tokens - 1) / tokens_per_second), and frames per
    second per stream. Prompts are picked (by asking the emulator, unpaced) so replies run to
    200 tokens or more, as a typical chat reply does; a 24-token reply has 10 ms of slack at 2%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "claude-haiku-5-5"
DONE = re.compile(r'data-message-id="([0-9a-f-]+)" data-status="(\w+)" hx-swap-oob="true"')
RUN = uuid.uuid4().hex[:6]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads and its child processes (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        total += sum(cpu_seconds(int(child)) for child in children)
    return total


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- environment -------------------------------------------------------------------------------


def configure(args: argparse.Namespace) -> None:
    from claudeapp.testing.env import _postgres_reachable, _redis_reachable
    from claudeapp.testing.ports import free_port

    env = os.environ
    env.setdefault("DJANGO_SETTINGS_MODULE", "claudeapp.settings")
    env.setdefault("SECRET_KEY", f"bench-{RUN}-not-for-production")
    env.update(
        DEBUG="0", SECURE_SSL_REDIRECT="0", SESSION_COOKIE_SECURE="0", CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0", ALLOWED_HOSTS="127.0.0.1,localhost", LOG_LEVEL="ERROR",
        STATIC_MANIFEST="0", REDIS_KEY_PREFIX=f"bench-chat-{RUN}",
        CHANNELS_PREFIX=f"bench-chat-{RUN}", CELERY_QUEUE=f"bench-chat-{RUN}",
        CLAUDE_USER_RPM="0", CLAUDE_GLOBAL_RPM="0", CLAUDE_MAX_CONCURRENT="0",
        ANTHROPIC_API_KEY="emulator-key", CLAUDE_EMULATOR="1",
    )  # fmt: skip
    if "DATABASE_URL" not in env:
        if _postgres_reachable():
            import psycopg

            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = 'claudeapp_bench_chat'"
                ).fetchone()
                if not exists:
                    conn.execute("CREATE DATABASE claudeapp_bench_chat")
            env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/claudeapp_bench_chat"
        else:
            env["DATABASE_URL"] = f"sqlite:///{ROOT / 'var' / 'bench-chat.sqlite3'}"
    if "REDIS_URL" not in env:
        if _redis_reachable():
            env["REDIS_URL"] = "redis://127.0.0.1:6379"
        else:
            from claudeapp.testing.env import _start_bundled_redis

            env["REDIS_URL"] = _start_bundled_redis()
    args.emulator_port = free_port()
    env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{args.emulator_port}"


def setup_database(conversations: int):
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.test import Client

    from conversations.models import Conversation

    user, _ = get_user_model().objects.get_or_create(username=f"bench-{RUN}")
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value
    created = Conversation.objects.bulk_create(
        Conversation(owner=user, model_id=MODEL, max_tokens=1024, title=f"bench {i}")
        for i in range(conversations)
    )
    return user, cookie, [str(c.pk) for c in created]


# --- the two clients -----------------------------------------------------------------------------


class Direct:
    def __init__(self, base_url: str) -> None:
        import anthropic

        # The same transport as the door's (the SDK's aiohttp client): like for like. A long
        # timeout: 200 streams opened at once on a busy host take a while.
        self.client = anthropic.AsyncAnthropic(
            base_url=base_url, api_key="emulator-key", max_retries=0, timeout=120.0,
            http_client=anthropic.DefaultAioHttpClient(timeout=120.0),
        )  # fmt: skip

    async def first_text(self, prompt: str, max_tokens: int) -> float:
        """Seconds from the call to the first text delta."""
        started = time.perf_counter()
        async with self.client.messages.stream(
            model=MODEL, max_tokens=max_tokens, thinking={"type": "disabled"},
            messages=[{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        ) as stream:  # fmt: skip
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    return time.perf_counter() - started
        raise RuntimeError("no text")

    async def duration(self, prompt: str) -> tuple[float, int]:
        """Seconds from the call to message_stop, and the output tokens."""
        started = time.perf_counter()
        async with self.client.messages.stream(
            model=MODEL, max_tokens=1024, thinking={"type": "disabled"},
            messages=[{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        ) as stream:  # fmt: skip
            message = await stream.get_final_message()
        return time.perf_counter() - started, message.usage.output_tokens


class ChatRun:
    """One message on one conversation, over the app's websocket, as a page sees it."""

    def __init__(self, ws_url: str, origin: str, cookie: str, conversation: str) -> None:
        self.url = f"{ws_url}/ws/chat/{conversation}/"
        self.origin = origin
        self.cookie = cookie
        self.first_text: float | None = None
        self.done_at: float | None = None
        self.status = ""
        self.message_id = ""
        self.frames: list[float] = []
        self.error = ""

    async def run(self, prompt: str, *, ready: asyncio.Event | None = None,
                  go: asyncio.Event | None = None) -> ChatRun:  # fmt: skip
        from websockets.asyncio.client import connect

        try:
            async with connect(
                self.url, additional_headers={"Cookie": f"sessionid={self.cookie}"},
                origin=self.origin, max_size=None, open_timeout=30,
            ) as ws:  # fmt: skip
                if ready is not None:
                    ready.set()
                if go is not None:
                    await go.wait()
                sent = time.perf_counter()
                await ws.send(json.dumps({"action": "send", "content": prompt}))
                while True:
                    frame = await asyncio.wait_for(ws.recv(), timeout=120)
                    now = time.perf_counter()
                    if '-tail" hx-swap-oob' in frame or '-blocks" hx-swap-oob' in frame:
                        self.frames.append(now - sent)
                        if self.first_text is None:
                            self.first_text = now - sent
                    match = DONE.search(frame)
                    if match and match.group(2) != "streaming":
                        self.message_id, self.status = match.group(1), match.group(2)
                        self.done_at = now - sent
                        return self
                    if 'id="composer-error"' in frame and "</span>" in frame and "><" not in frame:
                        self.error = re.sub(r"<[^>]+>", "", frame).strip()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            if ready is not None:
                ready.set()
        return self


# --- the parts ------------------------------------------------------------------------------------


async def part_a(args, server, cookie, conversations) -> None:
    direct = Direct(args.emulator_url)
    sdk, chat, pairs = [], [], []
    warmup = 10
    web_cpu = 0.0
    for i in range(args.n + warmup):
        if i == warmup:
            web_cpu = cpu_seconds(server.pid)
        prompt = f"Bench question {i}: what is the capital of France?"
        d = await direct.first_text(prompt, 16)
        run = await ChatRun(server.ws_url, server.url, cookie, conversations[i]).run(prompt)
        if run.first_text is None:
            raise SystemExit(f"chat run failed: {run.error or run.status}")
        if i >= warmup:
            sdk.append(d)
            chat.append(run.first_text)
            pairs.append(run.first_text - d)
    ms = 1000
    print(f"\n(a) time to first visible text, one at a time, interleaved, n={len(pairs)}")
    print(f"    direct SDK stream : p50 {percentile(sdk, 50) * ms:7.2f} ms   "
          f"p95 {percentile(sdk, 95) * ms:7.2f} ms")  # fmt: skip
    print(f"    chat (websocket)  : p50 {percentile(chat, 50) * ms:7.2f} ms   "
          f"p95 {percentile(chat, 95) * ms:7.2f} ms")  # fmt: skip
    print(f"    added             : p50 {(percentile(chat, 50) - percentile(sdk, 50)) * ms:7.2f} ms"
          f"   p95 {(percentile(chat, 95) - percentile(sdk, 95)) * ms:7.2f} ms"
          "   (difference of the percentiles; target p50 <= 4, p95 <= 10)")  # fmt: skip
    print(f"    paired difference : p50 {percentile(pairs, 50) * ms:7.2f} ms   "
          f"p95 {percentile(pairs, 95) * ms:7.2f} ms")  # fmt: skip
    web_cpu = cpu_seconds(server.pid) - web_cpu
    print(f"    web CPU per reply : {web_cpu / len(pairs) * ms:7.2f} ms   (16-token replies, "
          "send to stored, rendered and announced)")  # fmt: skip
    await direct.client.close()


async def _concurrent_chats(server, cookie, conversations, prompts) -> list[ChatRun]:
    ready = [asyncio.Event() for _ in conversations]
    go = asyncio.Event()
    runs = [ChatRun(server.ws_url, server.url, cookie, c) for c in conversations]
    tasks = [
        asyncio.create_task(run.run(prompt, ready=r, go=go))
        for run, prompt, r in zip(runs, prompts, ready, strict=True)
    ]
    await asyncio.gather(*(r.wait() for r in ready))
    go.set()
    await asyncio.gather(*tasks)
    return runs


async def warm_up(server, cookie, conversations) -> None:
    """A first reply per process pays for importing the SDK and building its types."""
    for conversation in conversations:
        await ChatRun(server.ws_url, server.url, cookie, conversation).run("Warm up, please")


async def part_b(args, server, cookie, conversations) -> None:
    direct = Direct(args.emulator_url)
    concurrency, rounds = 64, args.rounds_b
    sdk, chat, errors, truncated, statuses = [], [], 0, 0, {}
    all_runs: list[ChatRun] = []
    offset = 0
    per_round = []
    for r in range(rounds):
        prompts = [f"Round {r} conversation {i}: tell me about rivers" for i in range(concurrency)]
        round_sdk = await asyncio.gather(*(direct.first_text(p, 1024) for p in prompts))
        sdk += round_sdk
        runs = await _concurrent_chats(
            server, cookie, conversations[offset : offset + concurrency], prompts
        )
        offset += concurrency
        all_runs += runs
        firsts = [run.first_text for run in runs if run.first_text is not None]
        per_round.append((max(round_sdk), max(firsts, default=float("nan"))))
        for run in runs:
            statuses[run.status or "error"] = statuses.get(run.status or "error", 0) + 1
            if run.error or run.first_text is None or run.status not in ("complete", "truncated"):
                errors += 1
                continue
            truncated += run.status == "truncated"
            chat.append(run.first_text)
    await direct.client.close()
    ms = 1000
    print(f"\n(b) {concurrency} conversations at once x {rounds} rounds ({len(chat)} replies)")
    print(f"    direct SDK, 64 at once : p50 {percentile(sdk, 50) * ms:7.1f} ms   "
          f"p99 {percentile(sdk, 99) * ms:7.1f} ms")  # fmt: skip
    print(f"    chat, 64 at once       : p50 {percentile(chat, 50) * ms:7.1f} ms   "
          f"p99 {percentile(chat, 99) * ms:7.1f} ms")  # fmt: skip
    added = (percentile(chat, 99) - percentile(sdk, 99)) * ms
    print(f"    added p99              : {added:7.1f} ms"
          "   (target <= 100)")  # fmt: skip
    rounds_ms = ", ".join(f"{c * ms:.0f}/{d * ms:.0f}" for d, c in per_round)
    print(f"    slowest per round, chat/SDK ms: {rounds_ms}")
    print(f"    errors {errors}, truncated {truncated}, statuses {statuses}")
    _print_errors([run for run in all_runs if run.error or run.first_text is None])


async def _long_prompts(args, count: int, min_tokens: int) -> list[tuple[str, int]]:
    """Prompts whose emulator reply runs to at least `min_tokens` (asked unpaced)."""
    found: list[tuple[str, int]] = []
    args.emulator.config(tokens_per_second=0, ttft_ms=0)
    direct = Direct(args.emulator_url)
    k = 0
    while len(found) < count:
        batch = [f"Streaming bench prompt number {k + j} about long answers" for j in range(50)]
        k += 50
        replies = await asyncio.gather(*(
            direct.client.messages.create(
                model=MODEL, max_tokens=1024, thinking={"type": "disabled"},
                messages=[{"role": "user", "content": [{"type": "text", "text": p}]}],
            ) for p in batch
        ))  # fmt: skip
        for prompt, reply in zip(batch, replies, strict=True):
            if reply.usage.output_tokens >= min_tokens:
                found.append((prompt, reply.usage.output_tokens))
    await direct.client.close()
    args.emulator.config(tokens_per_second=args.tps, ttft_ms=args.ttft_ms)
    return found[:count]


async def part_c(args, server, cookie, conversations) -> None:
    from asgiref.sync import sync_to_async

    from conversations.models import Message

    count = args.streams_c
    prompts = await _long_prompts(args, count, args.min_tokens_c)
    direct = Direct(args.emulator_url)
    own = os.getpid()
    cpu_before = cpu_seconds(own)
    results = await asyncio.gather(
        *(direct.duration(p) for p, _ in prompts), return_exceptions=True
    )
    sdk_cpu = cpu_seconds(own) - cpu_before
    await direct.client.close()
    sdk_errors = [r for r in results if isinstance(r, BaseException)]
    baseline = [r for r in results if not isinstance(r, BaseException)]
    web_before = cpu_seconds(server.pid)
    ideal_of = lambda n: args.ttft_ms / 1000 + (n - 1) / args.tps  # noqa: E731
    sdk_ratios = [seconds / ideal_of(n) for seconds, n in baseline]
    runs = await _concurrent_chats(server, cookie, conversations[:count], [p for p, _ in prompts])
    web_cpu = cpu_seconds(server.pid) - web_before
    ids = [r.message_id for r in runs if r.message_id]
    tokens = await sync_to_async(
        lambda: dict(Message.objects.filter(pk__in=ids).values_list("id", "output_tokens"))
    )()
    from claudeapp.models import UsageRecord

    door_calls = await sync_to_async(
        lambda: list(
            UsageRecord.objects.filter(subject_id__in=ids).values_list(
                "latency_ms", "output_tokens"
            )
        )
    )()
    door_ratios = [
        ms / 1000 / (args.ttft_ms / 1000 + (n - 1) / args.tps) for ms, n in door_calls if n
    ]
    ratios, fps, errors, tails, last_ratios = [], [], 0, [], []
    for run in runs:
        if run.error or run.status != "complete":
            errors += 1
            continue
        n = tokens[uuid.UUID(run.message_id)]
        ideal = args.ttft_ms / 1000 + (n - 1) / args.tps
        ratios.append(run.done_at / ideal)
        if run.frames:
            tails.append(run.done_at - run.frames[-1])
            last_ratios.append(run.frames[-1] / ideal)
        if len(run.frames) > 1:
            fps.append((len(run.frames) - 1) / (run.frames[-1] - run.frames[0]))
    lengths = [n for _, n in prompts]
    print(f"\n(c) {count} streams at once (replies {min(lengths)}-{max(lengths)} tokens, "
          f"paced {args.ttft_ms} ms + {args.tps:g} tokens/s)")  # fmt: skip
    print(
        f"    direct SDK, same load : p50 {percentile(sdk_ratios, 50):.4f}   "
        f"p99 {percentile(sdk_ratios, 99):.4f}   max {max(sdk_ratios):.4f}   (its duration / ideal)"
        + (f", {len(sdk_errors)} errors ({sdk_errors[0]!r:.100})" if sdk_errors else "")
    )
    print(
        f"    door's call / ideal   : p50 {percentile(door_ratios, 50):.4f}   "
        f"max {max(door_ratios, default=float('nan')):.4f}"
        "   (the stream as the web process read it)"
    )
    print(
        f"    duration seen / ideal : p50 {percentile(ratios, 50):.4f}   "
        f"p99 {percentile(ratios, 99):.4f}   max {max(ratios):.4f}   (target <= 1.02 each)"
    )
    print(f"    within 1.02x          : {sum(r <= 1.02 for r in ratios)}/{len(ratios)}")
    firsts = [r.first_text for r in runs if r.first_text is not None]
    first_max = max(firsts, default=float("nan")) * 1000
    print(f"    send -> first text    : p50 {percentile(firsts, 50) * 1000:.0f} ms   "
          f"max {first_max:.0f} ms   (ideal {args.ttft_ms} ms)")  # fmt: skip
    print(f"    last text / ideal     : p50 {percentile(last_ratios, 50):.4f}   "
          f"max {max(last_ratios):.4f};  last text -> final: p50 "
          f"{percentile(tails, 50) * 1000:.0f} ms   max {max(tails) * 1000:.0f} ms")  # fmt: skip
    print(f"    frames/s per stream   : p50 {percentile(fps, 50):.1f}   max {max(fps):.1f}"
          "   (target <= 30)")  # fmt: skip
    streamed = sum(n for _, n in baseline)
    print(f"    CPU per streamed token: web process {web_cpu / streamed * 1e6:.0f} us "
          f"(the SDK client alone: {sdk_cpu / streamed * 1e6:.0f} us)")  # fmt: skip
    print(f"    errors {errors}")
    _print_errors([run for run in runs if run.error or run.status != "complete"])


def _print_errors(runs: list[ChatRun]) -> None:
    kinds: dict[str, int] = {}
    for run in runs:
        what = (run.error or f"status {run.status or 'none'}")[:120]
        kinds[what] = kinds.get(what, 0) + 1
    for what, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:5]:
        print(f"      {n} x {what}")


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="abc")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds-b", type=int, default=3)
    parser.add_argument("--streams-c", type=int, default=200)
    parser.add_argument("--min-tokens-c", type=int, default=200)
    parser.add_argument("--ttft-ms", type=int, default=200)
    parser.add_argument("--tps", type=float, default=80.0)
    parser.add_argument("--web-workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    configure(args)
    user, cookie, conversations = setup_database(args.n + 12 + 64 * args.rounds_b + args.streams_c)

    from claudeapp.testing.processes import AsgiServer, child_env
    from conversations.models import Conversation
    from emulator.testing import EmulatorProcess

    emulator = EmulatorProcess(
        args=("--ttft-ms", str(args.ttft_ms), "--tokens-per-second", str(args.tps)),
        port=args.emulator_port,
    ).start()
    args.emulator_url = emulator.url
    args.emulator = emulator

    # uvicorn reads WEB_CONCURRENCY, as in production (docker-compose sets one per core).
    server = AsgiServer(env=child_env(WEB_CONCURRENCY=str(args.web_workers)))
    server.start()
    print(f"chat bench {RUN}: emulator {emulator.url} (ttft {args.ttft_ms} ms, {args.tps:g} "
          f"tokens/s), app {server.url} ({args.web_workers} uvicorn worker(s)), "
          f"database {os.environ['DATABASE_URL'].split('://')[0]}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    try:
        rest = conversations
        # (a) compares like with like: 16-token replies on both sides.
        Conversation.objects.filter(pk__in=rest[: args.n + 10]).update(max_tokens=16)
        if "a" in args.parts:
            asyncio.run(part_a(args, server, cookie, rest[: args.n + 10]))
        rest = rest[args.n + 10 :]
        asyncio.run(warm_up(server, cookie, rest[:2]))
        rest = rest[2:]
        if "b" in args.parts:
            asyncio.run(part_b(args, server, cookie, rest[: 64 * args.rounds_b]))
        rest = rest[64 * args.rounds_b :]
        if "c" in args.parts:
            asyncio.run(part_c(args, server, cookie, rest))
    finally:
        server.stop()
        emulator.stop()
        Conversation.objects.filter(owner=user).delete()
        user.delete()


if __name__ == "__main__":
    main()
