"""What a conversation sends to Claude: stored turns, replayed verbatim, within the model's budget.

- Content blocks go back as they were returned (thinking signatures, tool blocks, citations).
- Thinking blocks are bound to the model that wrote them: when the conversation's model has
  changed since, they are left out of the request (and kept in storage).
- A reply that did not complete is sent as its text only (its thinking has no signature); a
  failed reply is not sent at all.
- History is trimmed by whole turns from the oldest, never between a ``tool_use`` and its
  ``tool_result`` (a turn starts at a user message that carries no tool results). The start
  point is stored on the conversation and moves only when the budget is exceeded, and then far
  enough (to ``CHAT_TRIM_TARGET`` of the budget) that the next several turns reuse the same
  prefix: the prompt cache keeps hitting between trims.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from claudeapp.claude import estimate_tokens
from claudeapp.replies import ReplyStatus

THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})
MESSAGE_OVERHEAD = 3
CONTINUE_PROMPT = (
    "Your previous reply was cut off by the length limit. Continue exactly where it stopped, "
    "without repeating anything."
)


@dataclass(frozen=True)
class StoredTurn:
    """A stored message, detached from the ORM (the runner works in async code)."""

    id: str
    role: str
    status: str
    content: list[dict]
    continuations: list[dict]
    model_id: str
    tokens: int
    created_at: dt.datetime


@dataclass
class History:
    messages: list[dict]
    tokens: int  # estimated input tokens of `messages`
    start: dt.datetime | None  # the oldest message sent (None: from the beginning)
    trimmed: bool  # earlier turns exist that are not sent
    first_sent_id: str | None = None
    turns_left_out: int = 0
    notes: list[str] = field(default_factory=list)


def text_tokens(text: str) -> int:
    return estimate_tokens(text) + MESSAGE_OVERHEAD


def _block_sendable(block: dict, *, keep_thinking: bool, complete: bool) -> bool:
    kind = block.get("type")
    if kind in THINKING_TYPES:
        if not keep_thinking:
            return False
        # A thinking block cut off mid-stream has no signature: the API would reject it.
        return kind == "redacted_thinking" or bool(block.get("signature"))
    if kind == "text":
        return bool(block.get("text"))
    # A reply that did not complete is sent as what the user saw: its text.
    return complete


def _assistant_blocks(turn: StoredTurn, blocks: list[dict], *, model_id: str) -> list[dict]:
    complete = turn.status == ReplyStatus.COMPLETE
    keep_thinking = _same_model(turn.model_id, model_id)
    return [b for b in blocks if _block_sendable(b, keep_thinking=keep_thinking, complete=complete)]


def _same_model(stored: str, current: str) -> bool:
    return not stored or stored == current


def turn_messages(turn: StoredTurn, *, model_id: str) -> list[dict]:
    """The API messages one stored message stands for (continuations included)."""
    if turn.role == "user":
        return [{"role": "user", "content": list(turn.content)}]
    if turn.status in (ReplyStatus.FAILED, ReplyStatus.STREAMING):
        return []
    out: list[dict] = []
    blocks = _assistant_blocks(turn, list(turn.content), model_id=model_id)
    if blocks:
        out.append({"role": "assistant", "content": blocks})
    for part in turn.continuations:
        part_turn = StoredTurn(
            turn.id, "assistant", part.get("status", turn.status), [], [],
            part.get("model_id", turn.model_id), 0, turn.created_at,
        )  # fmt: skip
        part_blocks = _assistant_blocks(
            part_turn, list(part.get("content") or []), model_id=model_id
        )
        if part.get("mode") == "prefill":
            _append_text(
                out, "".join(b.get("text", "") for b in part_blocks if b["type"] == "text")
            )
        else:
            out.append({"role": "user", "content": [{"type": "text", "text": part["prompt"]}]})
            if part_blocks:
                out.append({"role": "assistant", "content": part_blocks})
    return out


def _append_text(out: list[dict], text: str) -> None:
    if not text:
        return
    if out and out[-1]["role"] == "assistant":
        blocks = out[-1]["content"]
        if blocks and blocks[-1].get("type") == "text":
            blocks[-1] = {**blocks[-1], "text": blocks[-1]["text"] + text}
            return
        blocks.append({"type": "text", "text": text})
        return
    out.append({"role": "assistant", "content": [{"type": "text", "text": text}]})


def merge_roles(messages: Iterable[dict]) -> list[dict]:
    """Consecutive turns of one role as one message (the API merges them anyway)."""
    merged: list[dict] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            merged[-1] = {
                "role": message["role"],
                "content": [*merged[-1]["content"], *message["content"]],
            }
        else:
            merged.append({"role": message["role"], "content": list(message["content"])})
    return merged


def _opens_turn(turn: StoredTurn) -> bool:
    """A user message with no tool results: history may start here."""
    return turn.role == "user" and not any(b.get("type") == "tool_result" for b in turn.content)


def _turn_groups(turns: Sequence[StoredTurn]) -> list[list[StoredTurn]]:
    groups: list[list[StoredTurn]] = []
    for turn in turns:
        if not groups or _opens_turn(turn):
            groups.append([turn])
        else:
            groups[-1].append(turn)
    return groups


def build_history(
    turns: Sequence[StoredTurn],
    *,
    model_id: str,
    budget_tokens: int,
    start: dt.datetime | None,
    trim_target: float = 0.7,
) -> History:
    """The messages to send (``turns`` is the whole stored conversation, oldest first, with the
    new user turn last), trimmed by whole turns to fit ``budget_tokens``."""
    groups = _turn_groups(turns)
    if start is not None:
        kept = [g for g in groups if g[0].created_at >= start]
        if not kept and groups:
            kept = groups[-1:]
        groups_before = len(groups) - len(kept)
        groups = kept
    else:
        groups_before = 0
    sizes = [sum(t.tokens for t in g) for g in groups]
    total = sum(sizes)
    if total > budget_tokens and len(groups) > 1:
        # Move the start forward by whole turns, past the budget with room to spare, so the
        # prefix stays the same for the next several turns.
        target = int(budget_tokens * trim_target)
        drop = 0
        while drop < len(groups) - 1 and total > target:
            total -= sizes[drop]
            drop += 1
        groups_before += drop
        groups = groups[drop:]
        sizes = sizes[drop:]
    messages: list[dict] = []
    for group in groups:
        for turn in group:
            messages.extend(turn_messages(turn, model_id=model_id))
    merged = merge_roles(messages)
    new_start = groups[0][0].created_at if groups and groups_before else None
    return History(
        messages=merged,
        tokens=sum(sizes),
        start=new_start,
        trimmed=groups_before > 0,
        first_sent_id=groups[0][0].id if groups else None,
        turns_left_out=groups_before,
    )


def strip_trailing_whitespace(messages: list[dict]) -> list[dict]:
    """A trailing assistant turn (prefill) may not end in whitespace."""
    if not messages or messages[-1]["role"] != "assistant":
        return messages
    blocks = list(messages[-1]["content"])
    while blocks and blocks[-1].get("type") == "text":
        text = blocks[-1]["text"].rstrip()
        if text:
            blocks[-1] = {**blocks[-1], "text": text}
            break
        blocks.pop()
    return [*messages[:-1], {"role": "assistant", "content": blocks}]


def thinking_param(
    *, modes: Sequence[str], wanted: bool, budget: int, max_tokens: int
) -> dict[str, Any] | None:
    """The ``thinking`` request field for a model with these modes, or None to leave it out."""
    modes = tuple(modes)
    always_on = bool(modes) and "disabled" not in modes
    if always_on:
        return {"type": "adaptive"} if "adaptive" in modes else None
    if wanted:
        if "adaptive" in modes:
            return {"type": "adaptive"}
        if "enabled" in modes and max_tokens > 1024:
            return {"type": "enabled", "budget_tokens": max(1024, min(budget, max_tokens - 1))}
        return None
    return {"type": "disabled"} if "disabled" in modes else None
