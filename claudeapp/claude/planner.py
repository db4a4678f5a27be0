"""The prompt-cache planner: one place decides where `cache_control` breakpoints go.

Layout is fixed (ARCHITECTURE rule 4): tools -> system -> documents -> history -> new turn.
Candidate breakpoints, in prompt order: the last tool, the last system block, the last document
(all three 1h: they change rarely) and the last block of the conversation (5m: it moves every
turn). A candidate is used only when the prompt up to it reaches the model's minimum cacheable
length (below it nothing is cached, so the slot would be wasted). That gives at most 4
breakpoints, every 1h before every 5m (the API's rule for mixed TTLs), stable prefix first.
Markers the caller left on blocks are removed: the planner owns them all.

Each token is written to the cache once, at the first breakpoint after it, so an extra breakpoint
costs nothing and keeps the earlier prefix usable when a later part changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from claudeapp.claude.tokens import (
    MESSAGE_OVERHEAD,
    estimate_block_tokens,
    estimate_tool_tokens,
)

__all__ = ["MAX_BREAKPOINTS", "Breakpoint", "CachePlan", "plan_prompt"]

MAX_BREAKPOINTS = 4
LONG, SHORT = "1h", "5m"


@dataclass(frozen=True, slots=True)
class Breakpoint:
    section: str  # "tools" | "system" | "documents" | "conversation"
    ttl: str  # "1h" | "5m"
    prefix_tokens: int  # estimated prompt tokens up to and including the marked block


@dataclass
class CachePlan:
    tools: list[dict]
    system: list[dict]
    messages: list[dict]
    breakpoints: list[Breakpoint] = field(default_factory=list)
    total_tokens: int = 0  # estimated prompt tokens
    min_cacheable_tokens: int = 0

    @property
    def cached_prefix_tokens(self) -> int:
        """Tokens a repeat call with the same prefix should read from the cache."""
        return self.breakpoints[-1].prefix_tokens if self.breakpoints else 0

    @property
    def stable_prefix_tokens(self) -> int:
        """Tokens under the 1h breakpoints: cached across conversations and users."""
        long = [b for b in self.breakpoints if b.ttl == LONG]
        return long[-1].prefix_tokens if long else 0

    def params(self) -> dict[str, Any]:
        """`tools` / `system` / `messages` for the request (empty ones left out)."""
        out: dict[str, Any] = {"messages": self.messages}
        if self.tools:
            out["tools"] = self.tools
        if self.system:
            out["system"] = self.system
        return out


def _strip(block: Mapping) -> dict:
    return {k: v for k, v in block.items() if k != "cache_control"}


def _blocks(content: Any) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [_strip(b) for b in content]


def _mark(block: dict, ttl: str) -> None:
    block["cache_control"] = {"type": "ephemeral", "ttl": ttl}


def plan_prompt(
    *,
    min_cacheable_tokens: int,
    tools: Iterable[Mapping] = (),
    system: str | Iterable[Mapping] | None = None,
    documents: Sequence[Mapping] = (),
    history: Sequence[Mapping] = (),
    new_turn: str | Iterable[Mapping] | None = None,
    cache_conversation: bool = True,
) -> CachePlan:
    """Lay out a prompt and place its cache breakpoints.

    `documents` are content blocks (document / search_result / text) that open the first user
    turn; `history` is the conversation so far (verbatim message dicts); `new_turn` is the user's
    new message (appended as a user turn). `cache_conversation=False` leaves the conversation
    unmarked, for one-off prompts whose tail will never be sent again.
    """
    tool_list = [_strip(t) for t in tools]
    system_list = _blocks(system)
    document_list = [_strip(d) for d in documents]
    messages = [{**m, "content": _blocks(m.get("content"))} for m in history]
    if new_turn is not None:
        messages.append({"role": "user", "content": _blocks(new_turn)})

    if document_list:
        if messages and messages[0].get("role") == "user":
            messages[0] = {**messages[0], "content": document_list + messages[0]["content"]}
        else:
            messages.insert(0, {"role": "user", "content": list(document_list)})

    running = sum(estimate_tool_tokens(t) for t in tool_list)
    candidates: list[tuple[str, str, dict, int]] = []
    if tool_list:
        candidates.append(("tools", LONG, tool_list[-1], running))
    running += sum(estimate_block_tokens(b) for b in system_list)
    if system_list:
        candidates.append(("system", LONG, system_list[-1], running))

    last_block: dict | None = None
    for index, message in enumerate(messages):
        running += MESSAGE_OVERHEAD
        for position, block in enumerate(message["content"]):
            running += estimate_block_tokens(block)
            last_block = block
            if index == 0 and document_list and position == len(document_list) - 1:
                candidates.append(("documents", LONG, block, running))
    if (
        cache_conversation
        and last_block is not None
        and (not candidates or candidates[-1][2] is not last_block)
    ):
        candidates.append(("conversation", SHORT, last_block, running))

    breakpoints: list[Breakpoint] = []
    for section, ttl, block, prefix in candidates:
        if prefix < min_cacheable_tokens or len(breakpoints) == MAX_BREAKPOINTS:
            continue
        _mark(block, ttl)
        breakpoints.append(Breakpoint(section, ttl, prefix))

    return CachePlan(
        tools=tool_list,
        system=system_list,
        messages=messages,
        breakpoints=breakpoints,
        total_tokens=running,
        min_cacheable_tokens=min_cacheable_tokens,
    )
