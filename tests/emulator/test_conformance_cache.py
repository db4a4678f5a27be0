"""Prompt caching over HTTP with the official SDK in strict mode (reference sections F and J).

Exact arithmetic throughout: ``input_tokens + cache_creation_input_tokens +
cache_read_input_tokens`` equals count_tokens for the same request, and the stats agree with
the usage the calls reported.
"""

from __future__ import annotations

import anthropic
import pytest

from tests.emulator.support import wait_ended

MODEL = "claude-haiku-5-5"  # no thinking by default; 2,048-token minimum
MINIMUM = 2048
FIVE = {"type": "ephemeral"}  # ttl defaults to 5m
HOUR = {"type": "ephemeral", "ttl": "1h"}


def words(prefix: str, n: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))  # one token per word


def system(text: str, cc: dict | None = FIVE) -> list[dict]:
    block = {"type": "text", "text": text}
    if cc is not None:
        block["cache_control"] = cc
    return [block]


def ask(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


@pytest.fixture
def emu(emulator_clean):
    return emulator_clean


@pytest.fixture
def client(emu):
    with emu.client(max_retries=0) as c:
        yield c


def total(usage) -> int:
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def counted(client, **kw) -> int:
    kw.pop("max_tokens", None)
    return client.messages.count_tokens(**kw).input_tokens


def test_write_then_read_with_exact_token_arithmetic(emu, client):
    sys_blocks = system(words("rule", 3000))
    first_kw = {"model": MODEL, "max_tokens": 50, "system": sys_blocks,
                "messages": ask("What do the rules say about tides?")}  # fmt: skip
    # The cached prefix is exactly the system block: count it alone (the question's part is
    # what a request with a one-word question adds on top of the system).
    one = counted(client, model=MODEL, system=system(words("rule", 3000), None), messages=ask("x"))
    prefix = one - counted(client, model=MODEL, messages=ask("x"))
    assert prefix >= MINIMUM

    first = client.messages.create(**first_kw)
    u = first.usage
    assert u.cache_creation_input_tokens == prefix == u.cache_creation.ephemeral_5m_input_tokens
    assert u.cache_creation.ephemeral_1h_input_tokens == 0 and u.cache_read_input_tokens == 0
    assert total(u) == counted(client, **first_kw)
    assert 0 < u.input_tokens < 50

    second_kw = {**first_kw, "messages": ask("And what about currents, and the moon?")}
    with client.messages.stream(**second_kw) as stream:
        start_usage = None
        for event in stream:
            if event.type == "message_start":
                start_usage = event.message.usage
        second = stream.get_final_message()
    u2 = second.usage
    assert u2.cache_read_input_tokens == prefix and u2.cache_creation_input_tokens == 0
    assert total(u2) == counted(client, **second_kw)
    # message_start already carries the input side; the final usage agrees with it.
    assert start_usage.cache_read_input_tokens == prefix
    assert start_usage.input_tokens == u2.input_tokens

    stats = emu.stats()["cache"]
    assert stats["write_tokens"] == prefix and stats["read_tokens"] == prefix
    # count_tokens never touches the cache.
    counted(client, **second_kw)
    assert emu.stats()["cache"]["read_tokens"] == prefix


def test_one_hour_then_five_minutes_split_the_writes(client):
    tools = [
        {
            "name": "lookup",
            "description": words("desc", 2500),  # over the minimum on its own
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            "cache_control": HOUR,
        }
    ]
    kw = {"model": MODEL, "max_tokens": 30, "tools": tools, "system": system(words("s", 1500)),
          "messages": ask("Hello there")}  # fmt: skip
    tools_only = counted(client, model=MODEL, tools=tools, messages=ask("x")) - counted(
        client, model=MODEL, messages=ask("x")
    )
    u = client.messages.create(**kw).usage
    assert u.cache_creation.ephemeral_1h_input_tokens == tools_only
    assert u.cache_creation.ephemeral_5m_input_tokens == 1500
    assert u.cache_creation_input_tokens == tools_only + 1500
    assert total(u) == counted(client, **kw)
    u2 = client.messages.create(**kw).usage
    assert (u2.cache_read_input_tokens, u2.cache_creation_input_tokens) == (tools_only + 1500, 0)


def test_a_one_hour_breakpoint_after_a_five_minute_one_is_refused(emu, client):
    blocks = [*system("a " * 10, FIVE), *system("b " * 10, HOUR)]
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=MODEL, max_tokens=10, system=blocks, messages=ask("hi"))
    assert err.value.type == "invalid_request_error"
    assert err.value.api_message.startswith("system.1.cache_control.ttl: a ttl='1h'")
    assert "must not come after a ttl='5m' cache_control block" in err.value.api_message
    # The top-level (automatic) breakpoint sits after every explicit one.
    with pytest.raises(anthropic.BadRequestError, match="must not come after"):
        client.messages.create(
            model=MODEL, max_tokens=10, system=system("a " * 10, FIVE), cache_control=HOUR,
            messages=ask("hi"),
        )  # fmt: skip
    assert emu.stats()["cache"]["write_tokens"] == 0  # refused requests cache nothing


def test_the_automatic_breakpoint_counts_towards_the_four(client):
    blocks = [*system("a " * 5), *system("b " * 5), *system("c " * 5), *system("d " * 5)]
    client.messages.create(model=MODEL, max_tokens=5, system=blocks, messages=ask("hi"))
    with pytest.raises(anthropic.BadRequestError, match="Found 5"):
        client.messages.create(
            model=MODEL, max_tokens=5, system=blocks, cache_control=FIVE, messages=ask("hi")
        )


def test_automatic_caching_follows_the_conversation(client):
    history = ask(words("story", 2500))
    kw = {"model": MODEL, "max_tokens": 40, "cache_control": FIVE}
    first = client.messages.create(**kw, messages=history)
    n1 = counted(client, **kw, messages=history)
    # The breakpoint is on the last block: everything is written, nothing left uncached.
    assert first.usage.cache_creation_input_tokens == n1 and first.usage.input_tokens == 0
    history = [
        *history,
        {"role": "assistant", "content": [b.to_dict() for b in first.content]},
        {"role": "user", "content": "Go on, please."},
    ]
    second = client.messages.create(**kw, messages=history)
    n2 = counted(client, **kw, messages=history)
    # The previous turn's entry is found by looking back from the new breakpoint.
    assert second.usage.cache_read_input_tokens == n1
    assert second.usage.cache_creation_input_tokens == n2 - n1
    assert total(second.usage) == n2


def test_below_the_minimum_nothing_is_cached_and_nothing_fails(emu, client):
    kw = {"model": MODEL, "max_tokens": 10, "system": system(words("w", MINIMUM // 2)),
          "messages": ask("hi")}  # fmt: skip
    for _ in range(2):
        u = client.messages.create(**kw).usage
        assert (u.cache_creation_input_tokens, u.cache_read_input_tokens) == (0, 0)
        assert u.input_tokens == counted(client, **kw)
    # The same prefix is long enough for a model with a lower minimum (512, Fable 5.1).
    fable = client.messages.create(**{**kw, "model": "claude-fable-5-1", "max_tokens": 400})
    assert fable.usage.cache_creation_input_tokens > 0
    assert emu.stats()["cache"]["write_tokens"] == fable.usage.cache_creation_input_tokens


def test_the_cache_is_per_model_and_aliases_share_it(client):
    kw = {"model": "claude-haiku-4-5", "max_tokens": 10, "system": system(words("r", 4200)),
          "messages": ask("hi")}  # fmt: skip
    written = client.messages.create(**kw).usage.cache_creation_input_tokens
    assert written > 0
    alias = client.messages.create(**{**kw, "model": "claude-haiku-4-5-20251001"}).usage
    assert alias.cache_read_input_tokens == written
    other = client.messages.create(**{**kw, "model": "claude-opus-4-5"}).usage
    assert other.cache_read_input_tokens == 0 and other.cache_creation_input_tokens == written


def test_batch_lines_read_what_a_live_call_wrote(emu, client):
    emu.config(batch_seconds=0.2)
    sys_blocks = system(words("instruction", 3000), HOUR)
    warm = client.messages.create(
        model=MODEL, max_tokens=5, system=sys_blocks, messages=ask("warm up")
    )
    written = warm.usage.cache_creation.ephemeral_1h_input_tokens
    assert written > MINIMUM
    requests = [
        {"custom_id": f"doc-{i}", "params": {"model": MODEL, "max_tokens": 50,
         "system": sys_blocks, "messages": ask(f"Classify document {i}")}}
        for i in range(3)
    ]  # fmt: skip
    batch = client.messages.batches.create(requests=requests)
    wait_ended(client, batch.id)
    for item in client.messages.batches.results(batch.id):
        usage = item.result.message.usage
        assert usage.service_tier == "batch"
        assert usage.cache_read_input_tokens == written and usage.cache_creation_input_tokens == 0
    # A later live call reads the same entry (the batch refreshed it, it did not replace it).
    again = client.messages.create(
        model=MODEL, max_tokens=5, system=sys_blocks, messages=ask("again")
    )
    assert again.usage.cache_read_input_tokens == written
    assert emu.stats()["cache"] == {"write_tokens": written, "read_tokens": 4 * written,
                                    "entries": 1}  # fmt: skip
