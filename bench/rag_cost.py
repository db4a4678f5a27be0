"""RAG cost and latency, measured in one run.

    .venv/bin/python bench/rag_cost.py                 # all parts
    .venv/bin/python bench/rag_cost.py --parts a,c --n 50

It starts its own emulator (unpaced for a-c, paced for d: --ttft-ms 200, 80 tokens/s), on its own
database (PostgreSQL `claudeapp_bench_rag_cost` when PostgreSQL answers, else SQLite under var/)
and Redis keys of its own. Questions run through the same runner the Celery task uses.

(a) whole set in context: CPython's 79 reference topics (about 131K tokens, under the default
    150K budget) and n questions. Share of input tokens read from cache after the first
    question (target >= 0.8); billed input cost over the same input billed uncached (target
    <= 0.3); the ledger's cache reads against the emulator's own count.
(b) retrieved: the same set with the budget lowered so it no longer fits: the same figures.
(c) retrieval over 10,000 chunks (topics plus man pages): p50/p95 of the lexical search, and of
    a whole retrieval (the index check included) (target p95 <= 50 ms).
(d) added time to the first fragment on the page: a RAG answer (question stored, Celery task,
    worker, channel layer, socket) against a chat reply (socket, asyncio task in the web
    process), same model and emulator, interleaved, n/10 pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from decimal import Decimal

from rag_common import (
    build_set,
    configure,
    cost_questions,
    man_page_texts,
    percentile,
    setup_django,
    topic_texts,
)

MODEL = "claude-sonnet-5-5"
# A frame that shows reply content: appended text or thinking, or a snapshot with some text.
FRAGMENT = re.compile(r'-(tail|thinking|blocks)" hx-swap-oob="(beforeend|innerHTML)">[^<]')
PASSWORD = "bench-pass-9"  # noqa: S105 - a throwaway user of the bench database


def start_emulator(*args: str):
    from emulator.testing import EmulatorProcess

    port = int(os.environ["EMULATOR_PORT"])
    return EmulatorProcess(args=args, port=port).start()


def input_costs(queries, rates) -> tuple[Decimal, Decimal]:
    """(billed input cost, the same input billed uncached) over the answers' usage rows."""
    from claudeapp.models import UsageRecord

    billed = uncached = Decimal(0)
    rows = UsageRecord.objects.filter(
        subject_type="rag.ragquery", subject_id__in=[str(q.pk) for q in queries]
    )
    million = Decimal(1_000_000)
    for row in rows:
        billed += (
            row.input_tokens * rates.input
            + row.cache_write_5m_tokens * rates.cache_write_5m
            + row.cache_write_1h_tokens * rates.cache_write_1h
            + row.cache_read_tokens * rates.cache_read
        ) / million
        uncached += row.prompt_tokens * rates.input / million
    return billed, uncached


def run_questions(document_set, user, questions: list[str]):
    from documents.rag import services

    answers = []
    started = time.perf_counter()
    for i, question in enumerate(questions):
        query = services.ragquery_ask(
            document_set=document_set, user=user, question=question, enqueue=False
        )
        answer = services.ragquery_run(query_id=query.pk, timeout=120)
        answers.append(answer)
        if answer.status != "complete":
            print(f"  question {i}: {answer.status} {answer.error}")
        if (i + 1) % 50 == 0:
            print(f"  {i + 1} questions, {time.perf_counter() - started:.0f} s")
    return answers


def report_cost(label: str, answers, emulator, stats_before) -> None:
    from claudeapp.claude.config import get_config

    config = get_config()
    rates = config.prices.rates_at(config.canonical(MODEL), answers[0].created_at)
    after_first = answers[1:]
    read = sum(a.cache_read_tokens for a in after_first)
    prompt = sum(a.prompt_tokens for a in after_first)
    billed, uncached = input_costs(answers, rates)
    stats = emulator.stats()["cache"]
    emulator_reads = stats["read_tokens"] - stats_before["read_tokens"]
    total_reads = sum(a.cache_read_tokens for a in answers)
    print(f"\n({label}) {len(answers)} questions, {answers[0].get_strategy_display().lower()}, "
          f"set of {answers[0].set_tokens:,} tokens, model {MODEL}")  # fmt: skip
    print(f"  input tokens per question (mean): {prompt / max(1, len(after_first)):,.0f}")
    print(f"  cache-read share of input after the first question: {read / max(1, prompt):.3f}")
    print(f"  billed input cost / uncached input cost: {billed / uncached:.3f} "
          f"(${billed:.4f} / ${uncached:.4f})")  # fmt: skip
    total = sum((a.cost_usd or Decimal(0)) for a in answers)
    print(f"  total cost incl. output: ${total:.4f}; answers complete: "
          f"{sum(a.status == 'complete' for a in answers)}/{len(answers)}; "
          f"with citations: {sum(bool(a.citations) for a in answers)}")  # fmt: skip
    print(f"  cache reads: ledger {total_reads:,} tokens, emulator {emulator_reads:,} tokens "
          f"({'agree' if total_reads == emulator_reads else 'DIFFER'})")  # fmt: skip
    if answers[0].strategy == "retrieved":
        ms = [a.retrieval_ms for a in answers if a.retrieval_ms is not None]
        print(f"  retrieval in the task: p50 {percentile(ms, 50):.0f} ms, "
              f"p95 {percentile(ms, 95):.0f} ms")  # fmt: skip


def part_a_b(args, user, parts: set[str]) -> None:
    from django.conf import settings

    emulator = start_emulator("--ttft-ms", "0", "--tokens-per-second", "0")
    try:
        document_set, chunks = build_set("cost", topic_texts(), user)
        print(f"set: {document_set.documents.count()} topics, {chunks} chunks")
        questions = cost_questions(args.n)
        if "a" in parts:
            before = emulator.stats()["cache"]
            answers = run_questions(document_set, user, questions)
            report_cost("a", answers, emulator, before)
        if "b" in parts:
            settings.RAG_WHOLE_SET_MAX_TOKENS = 50_000
            before = emulator.stats()["cache"]
            answers = run_questions(document_set, user, questions)
            report_cost("b", answers, emulator, before)
    finally:
        emulator.stop()


def part_c(args, user) -> None:
    from django.db import connection

    from documents.rag import retrieval

    texts = topic_texts()
    texts.update(man_page_texts(6000))
    document_set, chunks = build_set("latency", texts, user, max_chunks=10_000)
    started = time.perf_counter()
    retrieval.index_set(document_set.pk)
    print(f"\n(c) retrieval over {chunks:,} chunks ({connection.vendor}); "
          f"first indexing {time.perf_counter() - started:.1f} s")  # fmt: skip
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE rag_chunksearch")
    questions = cost_questions(200)
    retrieval.lexical_search(document_set.pk, questions[0], 50)  # term statistics, once
    search, whole = [], []
    for question in questions:
        t0 = time.perf_counter()
        retrieval.lexical_search(document_set.pk, question, 50)
        t1 = time.perf_counter()
        retrieval.retrieve(document_set.pk, question)
        t2 = time.perf_counter()
        search.append((t1 - t0) * 1000)
        whole.append((t2 - t1) * 1000)
    for label, values in (("lexical search", search), ("retrieve (index check + search)", whole)):
        print(f"  {label}: p50 {percentile(values, 50):.1f} ms, p95 {percentile(values, 95):.1f} "
              f"ms, max {max(values):.1f} ms")  # fmt: skip


async def _first_fragment(url: str, origin: str, cookie: str, send: str | None) -> float:
    import json

    from websockets.asyncio.client import connect

    started = time.perf_counter()
    async with connect(url, additional_headers={"Cookie": f"sessionid={cookie}"}, origin=origin,
                       max_size=None, open_timeout=30) as ws:  # fmt: skip
        if send is not None:
            await ws.send(json.dumps({"action": "send", "content": send}))
        while True:
            frame = await asyncio.wait_for(ws.recv(), timeout=60)
            if FRAGMENT.search(frame):
                return time.perf_counter() - started


def part_d(args, user) -> None:
    from asgiref.sync import sync_to_async
    from django.test import Client

    from claudeapp.testing.processes import AsgiServer, CeleryWorker, child_env
    from conversations.models import Conversation
    from documents.rag import services

    emulator = start_emulator("--ttft-ms", "200", "--tokens-per-second", "80")
    env = child_env(CLAUDE_DEFAULT_MODEL="claude-haiku-5-5", REPLY_STOP_POLL_MS="100")
    server, worker = AsgiServer(env=env), CeleryWorker(env=env, concurrency=1)
    try:
        server.start()
        worker.start()
        client = Client()
        client.force_login(user)
        cookie = client.cookies["sessionid"].value
        document_set, _ = build_set("ttft", {"if.txt": topic_texts()["if.txt"]}, user)
        document_set.members.add(user)  # owning a set is not reading it: members read
        pairs = max(5, args.n // 10)
        conversations = [
            Conversation.objects.create(owner=user, model_id="claude-haiku-5-5", max_tokens=512)
            for _ in range(pairs + 1)
        ]
        os.environ["CLAUDE_DEFAULT_MODEL"] = "claude-haiku-5-5"

        async def rag_once(i: int) -> float:
            started = time.perf_counter()
            query = await sync_to_async(services.ragquery_ask)(
                document_set=document_set, user=user, question=f"What is the if statement? {i}"
            )
            await _first_fragment(f"{server.ws_url}/ws/rag/{query.pk}/", server.url, cookie, None)
            return time.perf_counter() - started

        async def chat_once(i: int) -> float:
            conversation = conversations[i]
            return await _first_fragment(
                f"{server.ws_url}/ws/chat/{conversation.pk}/", server.url, cookie,
                f"What is the if statement? {i}",
            )  # fmt: skip

        async def measure() -> tuple[list[float], list[float]]:
            await chat_once(pairs)  # warm-up
            await rag_once(-1)
            rag, chat = [], []
            for i in range(pairs):
                chat.append(await chat_once(i))
                rag.append(await rag_once(i))
                await asyncio.sleep(0.5)
            return rag, chat

        rag, chat = asyncio.run(measure())
        added = [r - c for r, c in zip(rag, chat, strict=True)]
        print(f"\n(d) time to the first fragment on the page, n={pairs} pairs, emulator ttft 200")
        for label, values in (("chat (web process)", chat), ("RAG (Celery worker)", rag)):
            ms = [v * 1000 for v in values]
            print(f"  {label}: p50 {percentile(ms, 50):.0f} ms, p95 {percentile(ms, 95):.0f} ms")
        ms = [v * 1000 for v in added]
        print(f"  added by the Celery path: median of paired differences "
              f"{statistics.median(ms):.0f} ms, p95 {percentile(ms, 95):.0f} ms")  # fmt: skip
    finally:
        worker.stop()
        server.stop()
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="a,b,c,d")
    parser.add_argument("--n", type=int, default=200, help="questions per strategy")
    parser.add_argument("--db", choices=["auto", "postgres", "sqlite"], default="auto")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    configure("rag_cost", db=args.db)
    os.environ["CLAUDE_DEFAULT_MODEL"] = MODEL
    setup_django()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("bench-rag", password=PASSWORD)
    if parts & {"a", "b"}:
        part_a_b(args, user, parts)
    if "c" in parts:
        part_c(args, user)
    if "d" in parts:
        part_d(args, user)


if __name__ == "__main__":
    sys.exit(main())
