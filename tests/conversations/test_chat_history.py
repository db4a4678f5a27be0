"""What a conversation sends: verbatim history, trimmed by whole turns, thinking per model."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from claudeapp.claude.tokens import estimate_block_tokens
from conversations import history as hist
from conversations import services

NOW = timezone.now()


def turn(role, content, *, i, status="complete", model_id="", tokens=None, continuations=()):
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    size = tokens if tokens is not None else 3 + sum(estimate_block_tokens(b) for b in content)
    return hist.StoredTurn(
        id=str(uuid.uuid4()), role=role, status=status, content=content,
        continuations=list(continuations), model_id=model_id, tokens=size,
        created_at=NOW + dt.timedelta(seconds=i),
    )  # fmt: skip


def tool_exchange(n: int, i: int, words: int = 120) -> list[hist.StoredTurn]:
    """A user question, a tool call, its result, and the answer: one whole turn."""
    filler = " ".join(f"w{n}x{k}" for k in range(words))
    tool_id = f"toolu_{n:04d}"
    return [
        turn("user", f"Question {n}: {filler}", i=i),
        turn(
            "assistant",
            [{"type": "tool_use", "id": tool_id, "name": "lookup", "input": {"q": n}}],
            i=i + 1,
            model_id="claude-haiku-5-5",
        ),  # fmt: skip
        turn("user", [{"type": "tool_result", "tool_use_id": tool_id, "content": filler}], i=i + 2),
        turn("assistant", f"Answer {n}: {filler}", i=i + 3, model_id="claude-haiku-5-5"),
    ]


def state(**kw) -> services.ConversationState:
    fields = {
        "id": uuid.uuid4(), "owner_id": 1, "title": "", "model_id": "claude-haiku-5-5",
        "max_tokens": 500, "thinking": False, "thinking_budget": 2048, "effort": "",
        "temperature": None, "system_prompt": "You are terse.", "history_start": None,
        "total_cost": 0,
    }  # fmt: skip
    fields.update(kw)
    return services.ConversationState(**fields)


def build(st, turns, user) -> services.RequestPlan:
    return async_to_sync(services.build_request)(st, turns, subject=uuid.uuid4(), user_id=user.pk)


@pytest.fixture
def small_context(db, settings):
    """Haiku 5.5 with a 6,000-token window, so a dozen tool turns overflow it."""
    from claudeapp.claude import config
    from claudeapp.models import ModelSpec

    ModelSpec.objects.filter(model_id="claude-haiku-5-5").update(context_window=6000)
    config.invalidate()
    yield
    config.invalidate()


def _tool_ids(messages):
    uses = {b["id"] for m in messages for b in m["content"] if b.get("type") == "tool_use"}
    results = {
        b["tool_use_id"] for m in messages for b in m["content"] if b.get("type") == "tool_result"
    }
    return uses, results


def test_trimming_leaves_out_whole_turns_and_never_half_a_tool_pair(
    small_context, user, emulator_clean
):
    turns = [t for n in range(12) for t in tool_exchange(n, n * 10)]
    turns.append(turn("user", "And now?", i=500))
    plan = build(state(), turns, user)
    messages = plan.params["messages"]
    assert plan.history.trimmed and plan.history.turns_left_out > 0
    first = messages[0]
    assert first["role"] == "user"
    assert not any(b.get("type") == "tool_result" for b in first["content"])
    uses, results = _tool_ids(messages)
    assert uses == results  # every call with its result, every result with its call
    assert messages[-1]["content"][-1]["text"] == "And now?"
    budget = 6000 - 500 - settings_margin() - hist.text_tokens("You are terse.")
    assert plan.history.tokens <= budget


def settings_margin() -> int:
    from django.conf import settings

    return settings.CHAT_CONTEXT_MARGIN_TOKENS


def test_trimming_moves_in_steps_so_the_cached_prefix_stays_put(
    small_context, user, emulator_clean
):
    turns = [t for n in range(12) for t in tool_exchange(n, n * 10)]
    st = state()
    starts, prefixes = [], []
    for extra in range(6):
        turns.append(turn("user", f"Follow-up {extra}", i=1000 + 10 * extra))
        plan = build(st, turns, user)
        starts.append(plan.history.start)
        prefixes.append(plan.params["messages"])
        st = state(history_start=plan.history.start or st.history_start)
        turns.append(
            turn("assistant", f"Reply {extra}", i=1001 + 10 * extra, model_id="claude-haiku-5-5")
        )
    # After the first trim the start stays where it is for the following turns...
    assert starts[0] is not None
    assert starts[1:4] == [starts[0]] * 3
    # ...so each request begins with the previous one (the cache's prefix is unchanged).
    for before, after in zip(prefixes[:3], prefixes[1:4], strict=True):
        head = [
            dict(
                m,
                content=[
                    {k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]
                ],
            )
            for m in after[: len(before) - 1]
        ]  # noqa: E501
        base = [
            dict(
                m,
                content=[
                    {k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]
                ],
            )
            for m in before[: len(before) - 1]
        ]  # noqa: E501
        assert head == base
    # The planner marks the system prompt (1h) and the conversation tail (5m).
    system = prefixes[-1]
    assert system[-1]["content"][-1].get("cache_control", {}).get("ttl") == "5m"


def test_count_tokens_is_called_only_near_the_limit(small_context, user, emulator_clean):
    short = [turn("user", "Hi there", i=0)]
    build(state(), short, user)
    counted = emulator_clean.stats()["requests"]
    assert not any("count_tokens" in k for k in counted)
    # About 90% of the budget: close enough to ask the API for the exact count.
    near = []
    n = 0
    while sum(t.tokens for t in near) < 4000:
        near += [turn("user", "x " * 150, i=2 * n), turn("assistant", "y " * 150, i=2 * n + 1)]
        n += 1
    near.append(turn("user", "Last one", i=999))
    build(state(), near, user)
    counted = emulator_clean.stats()["requests"]
    assert any("count_tokens" in k for k in counted), counted


def test_a_model_switch_leaves_old_thinking_out_of_the_request_but_keeps_it_stored(
    db, user, make_conversation
):
    from conversations.models import Message
    from emulator.thinking import signature_for

    conversation = make_conversation(model_id="claude-sonnet-5-5")
    thinking = {
        "type": "thinking",
        "thinking": "Let me think about this.",
        "signature": signature_for("Let me think about this.", "claude-sonnet-5-5"),
    }
    Message.objects.create(conversation=conversation, role="user",
                           content=[{"type": "text", "text": "Hi"}])  # fmt: skip
    stored = Message.objects.create(
        conversation=conversation, role="assistant", status="complete",
        model_id="claude-sonnet-5-5", content=[thinking, {"type": "text", "text": "Hello!"}],
    )  # fmt: skip
    turns = [services._stored(m) for m in conversation.messages.order_by("created_at")]
    turns.append(turn("user", "And?", i=10_000))

    same = build(state(model_id="claude-sonnet-5-5", max_tokens=4096), turns, user)
    assert same.params["messages"][1]["content"][0] == thinking  # replayed verbatim

    switched = build(state(model_id="claude-opus-5-5", max_tokens=4096), turns, user)
    replayed = switched.params["messages"][1]["content"]
    assert [b["type"] for b in replayed] == ["text"]
    stored.refresh_from_db()
    assert stored.content[0] == thinking  # storage keeps it


def test_replies_that_did_not_complete_are_sent_as_their_text_and_failed_ones_not_at_all():
    turns = [
        turn("user", "one", i=0),
        turn(
            "assistant",
            [
                {"type": "thinking", "thinking": "cut", "signature": ""},
                {"type": "text", "text": "partial answer"},
            ],
            i=1,
            status="stopped",
            model_id="claude-haiku-5-5",
        ),  # fmt: skip
        turn("user", "two", i=2),
        turn("assistant", "boom", i=3, status="failed", model_id="claude-haiku-5-5"),
        turn("user", "three", i=4),
    ]
    history = hist.build_history(
        turns, model_id="claude-haiku-5-5", budget_tokens=10**6, start=None
    )
    assert history.messages == [
        {"role": "user", "content": [{"type": "text", "text": "one"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "partial answer"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "three"}],
        },
    ]


def test_a_continued_reply_is_replayed_as_it_was_produced():
    parts = [{"mode": "turn", "prompt": hist.CONTINUE_PROMPT, "status": "complete",
              "model_id": "m", "content": [{"type": "text", "text": " the rest."}]}]  # fmt: skip
    turns = [
        turn("user", "go", i=0),
        turn(
            "assistant", "The start of", i=1, status="complete", model_id="m", continuations=parts
        ),
    ]
    messages = hist.build_history(turns, model_id="m", budget_tokens=10**6, start=None).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2]["content"][0]["text"] == hist.CONTINUE_PROMPT
    prefill = [dict(parts[0], mode="prefill")]
    turns[1] = turn("assistant", "The start of", i=1, model_id="m", continuations=prefill)
    messages = hist.build_history(turns, model_id="m", budget_tokens=10**6, start=None).messages
    assert messages[1]["content"] == [{"type": "text", "text": "The start of the rest."}]


@pytest.mark.parametrize(
    ("modes", "wanted", "expected"),
    [
        (("adaptive",), False, {"type": "adaptive"}),  # always on
        (("adaptive", "disabled"), False, {"type": "disabled"}),
        (("adaptive", "disabled"), True, {"type": "adaptive"}),
        (("enabled", "disabled"), True, {"type": "enabled", "budget_tokens": 2048}),
        (("enabled", "disabled"), False, {"type": "disabled"}),
        ((), True, None),
    ],
)
def test_thinking_follows_the_registry(modes, wanted, expected):
    assert hist.thinking_param(modes=modes, wanted=wanted, budget=2048, max_tokens=4096) == expected


def test_temperature_and_effort_are_sent_only_where_the_registry_allows(db, user, emulator_clean):
    from decimal import Decimal

    turns = [turn("user", "hi", i=0)]
    sonnet = build(state(model_id="claude-sonnet-5-5", temperature=Decimal("0.3"), effort="low"),
                   turns, user)  # fmt: skip
    assert "temperature" not in sonnet.params and sonnet.params["effort"] == "low"
    haiku45 = build(state(model_id="claude-haiku-4-5", temperature=Decimal("0.3"), effort="low"),
                    turns, user)  # fmt: skip
    assert haiku45.params["temperature"] == 0.3 and "effort" not in haiku45.params
    assert haiku45.params["thinking"] == {"type": "disabled"}
