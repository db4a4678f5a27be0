"""Unit tests of emulator/cache.py: the exact-prefix prompt cache and its breakpoint rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.cache import (
    LOOKBACK_BLOCKS,
    TTL_ORDER_MESSAGE,
    CacheUsage,
    PromptCache,
    check_breakpoints,
    find_breakpoints,
    segment_paths,
)

MODEL = "claude-sonnet-4-5"
FIVE = {"type": "ephemeral"}
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}


@dataclass(frozen=True)
class Seg:
    kind: str
    tokens: int
    cache_control: dict | None
    fingerprint: str


def segs(*tokens: int, marks: dict[int, dict] | None = None, tag: str = "") -> list[Seg]:
    marks = marks or {}
    return [Seg("text", t, marks.get(i), f"{tag}block{i}:{t}") for i, t in enumerate(tokens)]


def total(usage: CacheUsage) -> int:
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def test_no_breakpoint_means_everything_is_uncached_input():
    cache = PromptCache()
    usage = cache.apply(MODEL, segs(100, 200), None, 10, now=0)
    assert usage == CacheUsage(300, 0, 0, 0, 0)


def test_first_call_writes_the_prefix_and_second_call_reads_it():
    cache = PromptCache()
    request = segs(600, 500, 40, marks={1: FIVE})
    first = cache.apply(MODEL, request, None, 1024, now=0)
    assert first == CacheUsage(40, 1100, 1100, 0, 0)
    second = cache.apply(MODEL, request, None, 1024, now=10)
    assert second == CacheUsage(40, 0, 0, 0, 1100)
    assert cache.stats()["write_tokens"] == 1100
    assert cache.stats()["read_tokens"] == 1100


def test_prefix_below_the_minimum_is_not_cached_and_is_no_error():
    cache = PromptCache()
    request = segs(300, 200, 10, marks={1: FIVE})
    for now in (0, 1):
        assert cache.apply(MODEL, request, None, 1024, now=now) == CacheUsage(510, 0, 0, 0, 0)


def test_writes_split_by_ttl_of_the_breakpoint_that_covers_them():
    cache = PromptCache()
    request = segs(700, 400, 300, 25, marks={0: ONE_HOUR, 2: FIVE})
    usage = cache.apply(MODEL, request, None, 500, now=0)
    assert usage.ephemeral_1h_input_tokens == 700
    assert usage.ephemeral_5m_input_tokens == 700  # 400 + 300 after the 1h breakpoint
    assert usage.cache_creation_input_tokens == 1400
    assert usage.input_tokens == 25


def test_changed_block_keeps_earlier_breakpoint_and_rewrites_after_it():
    cache = PromptCache()
    cache.apply(MODEL, segs(600, 500, 300, 10, marks={0: FIVE, 2: FIVE}), None, 100, now=0)
    changed = segs(600, 500, 300, 10, marks={0: FIVE, 2: FIVE})
    changed[1] = Seg("text", 500, None, "something else")
    usage = cache.apply(MODEL, changed, None, 100, now=1)
    assert usage.cache_read_input_tokens == 600
    assert usage.cache_creation_input_tokens == 800
    assert usage.input_tokens == 10


def test_moving_cache_control_does_not_change_the_key():
    cache = PromptCache()
    cache.apply(MODEL, segs(800, 400, 5, marks={1: FIVE}), None, 100, now=0)
    # Same blocks, breakpoint now one block later: the old entry is found by lookback.
    usage = cache.apply(MODEL, segs(800, 400, 5, marks={2: FIVE}), None, 100, now=1)
    assert usage.cache_read_input_tokens == 1200
    assert usage.cache_creation_input_tokens == 5


def test_top_level_cache_control_caches_up_to_the_last_cacheable_block():
    cache = PromptCache()
    request = segs(900, 300, 100)
    request.append(Seg("thinking", 50, None, "thinking"))
    first = cache.apply(MODEL, request, {"type": "ephemeral"}, 1024, now=0)
    assert first == CacheUsage(50, 1300, 1300, 0, 0)
    assert find_breakpoints(request, {"type": "ephemeral"})[0].index == 2


def test_automatic_breakpoint_advances_and_reads_the_previous_turn_by_lookback():
    cache = PromptCache()
    turn1 = segs(2000, 30, 40)
    cache.apply(MODEL, turn1, {"type": "ephemeral"}, 1024, now=0)
    turn2 = segs(2000, 30, 40, 50, 60)
    usage = cache.apply(MODEL, turn2, {"type": "ephemeral"}, 1024, now=5)
    assert usage.cache_read_input_tokens == 2070
    assert usage.cache_creation_input_tokens == 110
    assert usage.input_tokens == 0


def test_lookback_is_limited_to_twenty_blocks():
    cache = PromptCache()
    head = [2000]
    cache.apply(MODEL, segs(*head, marks={0: FIVE}), None, 1024, now=0)
    near = segs(2000, *([1] * LOOKBACK_BLOCKS), marks={LOOKBACK_BLOCKS: FIVE})
    assert cache.apply(MODEL, near, None, 1024, now=1).cache_read_input_tokens == 2000
    fresh = PromptCache()
    fresh.apply(MODEL, segs(*head, marks={0: FIVE}), None, 1024, now=0)
    far = segs(2000, *([1] * (LOOKBACK_BLOCKS + 1)), marks={LOOKBACK_BLOCKS + 1: FIVE})
    assert fresh.apply(MODEL, far, None, 1024, now=1).cache_read_input_tokens == 0


def test_cache_is_per_model():
    cache = PromptCache()
    request = segs(2000, 10, marks={0: FIVE})
    cache.apply(MODEL, request, None, 1024, now=0)
    other = cache.apply("claude-opus-4-5", request, None, 1024, now=1)
    assert other.cache_read_input_tokens == 0
    assert other.cache_creation_input_tokens == 2000


def test_five_minute_entry_expires_and_a_read_refreshes_it():
    cache = PromptCache()
    request = segs(2000, 10, marks={0: FIVE})
    cache.apply(MODEL, request, None, 1024, now=0)
    assert cache.apply(MODEL, request, None, 1024, now=250).cache_read_input_tokens == 2000
    # 500 s after the write but only 250 s after the refreshing read: still there.
    assert cache.apply(MODEL, request, None, 1024, now=500).cache_read_input_tokens == 2000
    expired = cache.apply(MODEL, request, None, 1024, now=500 + 301)
    assert expired.cache_read_input_tokens == 0
    assert expired.cache_creation_input_tokens == 2000


def test_one_hour_entry_outlives_five_minutes():
    cache = PromptCache()
    request = segs(2000, 10, marks={0: ONE_HOUR})
    cache.apply(MODEL, request, None, 1024, now=0)
    assert cache.apply(MODEL, request, None, 1024, now=3000).cache_read_input_tokens == 2000
    assert cache.apply(MODEL, request, None, 1024, now=3000 + 3601).cache_read_input_tokens == 0


def test_injected_clock_is_used_when_now_is_not_given():
    clock = {"t": 0.0}
    cache = PromptCache(clock=lambda: clock["t"])
    request = segs(2000, 10, marks={0: FIVE})
    cache.apply(MODEL, request, None, 1024)
    clock["t"] = 301.0
    assert cache.apply(MODEL, request, None, 1024).cache_read_input_tokens == 0


def test_reset_forgets_entries_and_stats():
    cache = PromptCache()
    request = segs(2000, 10, marks={0: FIVE})
    cache.apply(MODEL, request, None, 1024, now=0)
    cache.reset()
    assert cache.stats() == {"write_tokens": 0, "read_tokens": 0, "entries": 0}
    assert cache.apply(MODEL, request, None, 1024, now=1).cache_read_input_tokens == 0


def test_usage_fields_have_the_wire_shape():
    usage = CacheUsage(1, 2, 2, 0, 3)
    assert usage.usage_fields() == {
        "input_tokens": 1,
        "cache_creation_input_tokens": 2,
        "cache_read_input_tokens": 3,
        "cache_creation": {"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 0},
    }


# -- check_breakpoints -----------------------------------------------------------------


def test_five_breakpoints_give_the_real_message():
    request = segs(1, 1, 1, 1, 1, marks=dict.fromkeys(range(5), FIVE))
    assert check_breakpoints(request, None) == (
        "A maximum of 4 blocks with cache_control may be provided. Found 5."
    )


def test_automatic_breakpoint_counts_towards_the_limit():
    request = segs(1, 1, 1, 1, 1, marks=dict.fromkeys(range(4), FIVE))
    assert check_breakpoints(request, None) is None
    assert check_breakpoints(request, {"type": "ephemeral"}) == (
        "A maximum of 4 blocks with cache_control may be provided. Found 5."
    )
    # On a block that already has cache_control it is the same breakpoint.
    marked_last = segs(1, 1, 1, 1, 1, marks=dict.fromkeys(range(1, 5), FIVE))
    assert check_breakpoints(marked_last, {"type": "ephemeral"}) is None


def test_one_hour_after_five_minutes_is_rejected_with_its_path():
    body = {
        "system": [
            {"type": "text", "text": "a", "cache_control": FIVE},
            {"type": "text", "text": "b"},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "c", "cache_control": ONE_HOUR}]}
        ],
    }
    request = segs(5, 5, 5, marks={0: FIVE, 2: ONE_HOUR})
    paths = segment_paths(body)
    assert paths == ["system.0", "system.1", "messages.0.content.0"]
    assert check_breakpoints(request, None, paths) == (
        "messages.0.content.0.cache_control.ttl: " + TTL_ORDER_MESSAGE
    )
    assert check_breakpoints(request, None).startswith("a ttl='1h' cache_control block must")


def test_one_hour_before_five_minutes_is_fine():
    assert check_breakpoints(segs(5, 5, marks={0: ONE_HOUR, 1: FIVE}), None) is None


def test_top_level_one_hour_after_explicit_five_minutes_is_rejected():
    request = segs(5, 5, marks={0: FIVE})
    assert check_breakpoints(request, ONE_HOUR) == "cache_control.ttl: " + TTL_ORDER_MESSAGE


def test_unknown_ttl_is_rejected():
    request = segs(5, marks={0: {"type": "ephemeral", "ttl": "10m"}})
    assert check_breakpoints(request, None) == "Input should be '5m' or '1h'"


def test_segment_paths_match_part_one_segments():
    tokens = pytest.importorskip("emulator.tokens")
    body = {
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "system": "sys",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": []},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ],
    }
    assert len(segment_paths(body)) == len(tokens.request_segments(body))


def test_real_segments_keep_the_token_identity():
    tokens = pytest.importorskip("emulator.tokens")
    system = [{"type": "text", "text": "policy " * 1500, "cache_control": ONE_HOUR}]
    body = {
        "model": MODEL,
        "system": system,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What now?"}]}],
        "cache_control": {"type": "ephemeral"},
    }
    cache = PromptCache()
    request = tokens.request_segments(body)
    assert check_breakpoints(request, body["cache_control"], segment_paths(body)) is None
    first = cache.apply(MODEL, request, body["cache_control"], 1024, now=0)
    assert total(first) == tokens.count_request_tokens(body)
    assert first.ephemeral_1h_input_tokens == request[0].tokens
    assert first.ephemeral_5m_input_tokens == request[1].tokens
    second = cache.apply(MODEL, request, body["cache_control"], 1024, now=1)
    assert second.cache_read_input_tokens == tokens.count_request_tokens(body)


# -- properties ------------------------------------------------------------------------

_ttl = st.sampled_from([None, FIVE, ONE_HOUR])


@st.composite
def requests(draw):
    n = draw(st.integers(min_value=0, max_value=30))
    out = []
    for i in range(n):
        kind = draw(st.sampled_from(["text", "text", "tool", "thinking", "image"]))
        control = None if kind == "thinking" else draw(_ttl)
        out.append(
            Seg(kind, draw(st.integers(0, 3000)), control, f"f{draw(st.integers(0, 3))}:{i}")
        )
    top = draw(st.sampled_from([None, FIVE, ONE_HOUR]))
    return out, top, draw(st.sampled_from([0, 512, 1024, 4096]))


@settings(max_examples=150, deadline=None)
@given(requests(), requests())
def test_token_identity_always_holds(first, second):
    cache = PromptCache()
    for (request, top, minimum), now in ((first, 0), (second, 60), (first, 120)):
        usage = cache.apply(MODEL, request, top, minimum, now=now)
        assert total(usage) == sum(s.tokens for s in request)
        assert usage.cache_creation_input_tokens == (
            usage.ephemeral_5m_input_tokens + usage.ephemeral_1h_input_tokens
        )
        assert min(usage.input_tokens, usage.cache_read_input_tokens) >= 0


@settings(max_examples=150, deadline=None)
@given(requests())
def test_second_identical_call_reads_what_the_first_wrote(case):
    request, top, minimum = case
    cache = PromptCache()
    first = cache.apply(MODEL, request, top, minimum, now=0)
    second = cache.apply(MODEL, request, top, minimum, now=1)
    assert second.cache_read_input_tokens == (
        first.cache_read_input_tokens + first.cache_creation_input_tokens
    )
    assert second.cache_creation_input_tokens == 0
    assert second.input_tokens == first.input_tokens
