"""What `door.stream` / `door.astream` yield: deltas and citations, then exactly one of `Final`
(the complete message, `message_stop` received) or `Failed` (the error and whatever arrived)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anthropic.types import Message

    from claudeapp.claude.errors import ClaudeError
    from claudeapp.claude.ledger import Entry

__all__ = [
    "Citation",
    "Failed",
    "Final",
    "StreamEvent",
    "TextDelta",
    "ThinkingDelta",
    "ToolUseDelta",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    index: int = 0  # the content block it belongs to


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    thinking: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class ToolUseDelta:
    partial_json: str
    index: int = 0
    tool_use_id: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class Citation:
    citation: dict[str, Any]
    index: int = 0


@dataclass(frozen=True, slots=True)
class Final:
    message: Message
    booked: Entry | None = None  # the ledger entry the door saved for the call (tokens, cost)


@dataclass(frozen=True, slots=True)
class Failed:
    error: ClaudeError
    partial: Message | None = None  # content received before the failure, stop_reason None


StreamEvent = TextDelta | ThinkingDelta | ToolUseDelta | Citation | Final | Failed
