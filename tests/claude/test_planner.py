"""The prompt-cache planner: placement rules, a property test, and real cache reads."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claudeapp.claude import CallContext
from claudeapp.claude.planner import MAX_BREAKPOINTS, plan_prompt


def words(n: int, seed: str = "w") -> str:
    return " ".join(f"{seed}{i}" for i in range(n))


def markers(plan) -> list[tuple[str, str]]:
    """(where, ttl) of every cache_control in render order: tools -> system -> messages."""
    out = []
    for tool in plan.tools:
        if "cache_control" in tool:
            out.append(("tools", tool["cache_control"]["ttl"]))
    for block in plan.system:
        if "cache_control" in block:
            out.append(("system", block["cache_control"]["ttl"]))
    for message in plan.messages:
        for block in message["content"]:
            if "cache_control" in block:
                out.append(("messages", block["cache_control"]["ttl"]))
    return out


TOOL = {"name": "lookup", "description": words(600, "t"), "input_schema": {"type": "object"}}


def test_stable_parts_get_one_hour_and_the_conversation_five_minutes():
    plan = plan_prompt(
        min_cacheable_tokens=1024,
        tools=[TOOL],
        system=words(1200, "s"),
        documents=[{"type": "text", "text": words(1500, "d")}],
        history=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": [{"type": "text", "text": "first answer"}]},
        ],
        new_turn="second question",
    )
    assert [(b.section, b.ttl) for b in plan.breakpoints] == [
        ("system", "1h"),
        ("documents", "1h"),
        ("conversation", "5m"),
    ]
    # Tools alone (~600 tokens) are below the minimum: no slot wasted on them.
    assert "cache_control" not in plan.tools[0]
    assert markers(plan) == [("system", "1h"), ("messages", "1h"), ("messages", "5m")]
    # Documents open the first user turn; the new turn is last and carries the 5m marker.
    first = plan.messages[0]["content"]
    assert first[0]["text"].startswith("d0") and first[1]["text"] == "first question"
    assert plan.messages[-1]["content"][-1]["cache_control"]["ttl"] == "5m"
    assert plan.cached_prefix_tokens == plan.breakpoints[-1].prefix_tokens == plan.total_tokens
    assert plan.stable_prefix_tokens == plan.breakpoints[1].prefix_tokens


def test_nothing_is_marked_below_the_minimum_and_caller_markers_are_replaced():
    plan = plan_prompt(
        min_cacheable_tokens=4096,
        system=[{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}],
        new_turn="hello",
    )
    assert plan.breakpoints == [] and markers(plan) == []
    assert plan.cached_prefix_tokens == 0


def test_one_off_prompts_leave_the_tail_unmarked():
    plan = plan_prompt(
        min_cacheable_tokens=1024,
        system=words(1500),
        new_turn=words(3000, "doc"),
        cache_conversation=False,
    )
    assert [(b.section, b.ttl) for b in plan.breakpoints] == [("system", "1h")]


def test_the_callers_blocks_are_not_mutated():
    system = [{"type": "text", "text": words(2000)}]
    plan_prompt(min_cacheable_tokens=1024, system=system, new_turn="q")
    assert "cache_control" not in system[0]


block_text = st.integers(min_value=0, max_value=3000).map(lambda n: words(n))


@settings(max_examples=200, deadline=None)
@given(
    n_tools=st.integers(0, 3),
    tool_size=st.integers(0, 2000),
    system=st.lists(block_text, max_size=3),
    documents=st.lists(block_text, max_size=4),
    history=st.lists(block_text, max_size=6),
    new_turn=st.one_of(st.none(), block_text),
    minimum=st.sampled_from([0, 512, 1024, 2048, 4096]),
    cache_conversation=st.booleans(),
)
def test_property_never_more_than_four_and_never_five_minutes_before_one_hour(
    n_tools, tool_size, system, documents, history, new_turn, minimum, cache_conversation
):
    tools = [
        {"name": f"t{i}", "description": words(tool_size), "input_schema": {"type": "object"}}
        for i in range(n_tools)
    ]
    roles = ["user", "assistant"]
    plan = plan_prompt(
        min_cacheable_tokens=minimum,
        tools=tools,
        system=[{"type": "text", "text": t} for t in system if t],
        documents=[{"type": "text", "text": t or "x"} for t in documents],
        history=[{"role": roles[i % 2], "content": t or "x"} for i, t in enumerate(history)],
        new_turn=new_turn,
        cache_conversation=cache_conversation,
    )
    found = markers(plan)
    assert len(found) == len(plan.breakpoints) <= MAX_BREAKPOINTS
    ttls = [ttl for _where, ttl in found]
    assert ttls == sorted(ttls, key=lambda ttl: 0 if ttl == "1h" else 1), ttls
    prefixes = [b.prefix_tokens for b in plan.breakpoints]
    assert prefixes == sorted(prefixes)
    assert all(p >= minimum for p in prefixes)
    assert plan.cached_prefix_tokens == (prefixes[-1] if prefixes else 0)


# --- through the emulator (its prompt cache arrived with emulator part 2) -------------------------


@pytest.mark.django_db
def test_the_plan_gives_cache_reads_on_the_second_call(door, emu):
    model = "claude-sonnet-5-5"
    kwargs = {
        "tools": [TOOL],
        "system": words(1500, "sys"),
        "documents": [{"type": "text", "text": words(2000, "doc")}],
        "new_turn": "What does the document say?",
    }
    ctx = CallContext("chat")
    first_plan = door.plan_prompt(model, **kwargs)
    first = door.create(ctx, model=model, max_tokens=20, **first_plan.params())
    assert first.usage.cache_read_input_tokens == 0
    written = first.usage.cache_creation_input_tokens
    assert written > 0
    # The 1h markers wrote the stable prefix with the 1h TTL, the tail with 5m.
    assert first.usage.cache_creation.ephemeral_1h_input_tokens > 0

    second = door.create(
        ctx, model=model, max_tokens=20, **door.plan_prompt(model, **kwargs).params()
    )
    assert second.usage.cache_read_input_tokens == written
    assert second.usage.cache_creation_input_tokens == 0
    # The planner's estimate of the cached prefix is the emulator's count (same token rule).
    assert second.usage.cache_read_input_tokens == first_plan.cached_prefix_tokens

    # A new turn after the reply still reads the whole earlier prefix.
    history = [
        {"role": "user", "content": [{"type": "text", "text": kwargs["new_turn"]}]},
        {"role": "assistant", "content": [{"type": "text", "text": second.content[0].text}]},
    ]
    third_plan = door.plan_prompt(
        model, tools=kwargs["tools"], system=kwargs["system"], documents=kwargs["documents"],
        history=history, new_turn="And then?",
    )  # fmt: skip
    third = door.create(ctx, model=model, max_tokens=20, **third_plan.params())
    assert third.usage.cache_read_input_tokens >= first_plan.stable_prefix_tokens
    from claudeapp.models import UsageRecord

    rows = list(UsageRecord.objects.order_by("created_at"))
    assert [r.cache_read_tokens > 0 for r in rows] == [False, True, True]
    assert rows[0].cache_write_1h_tokens + rows[0].cache_write_5m_tokens == written
