"""Fast local token estimates: no API round trip, good enough for budgets and cache planning.

The rule: one token per word piece of at most 8 word characters, plus one per punctuation or
symbol character; whitespace is free. For English prose that is about 4 characters a token.
Scripts written without spaces (CJK, kana, hangul, Thai) count one token per character, since a
run of them is one "word" to the regex but several tokens to any real tokenizer. Exact counts come
from `door.count_tokens` (the API's own count, cached).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping

__all__ = ["estimate_block_tokens", "estimate_request_tokens", "estimate_tokens"]

_PIECE = re.compile(r"\w{1,8}|[^\w\s]")
_WIDE = re.compile(
    r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)

MESSAGE_OVERHEAD = 3
TOOL_OVERHEAD = 8
IMAGE_TOKENS = 1600  # the per-image maximum after the API's downscaling
PDF_BYTES_PER_PAGE = 60_000
PDF_PAGE_TOKENS = 1500


def estimate_tokens(text: str) -> int:
    """A fast local estimate of the tokens in `text` (never an API call)."""
    if not text:
        return 0
    pieces = _PIECE.subn("", text)[1]  # counts matches without building a list of them
    if text.isascii():
        return pieces
    return pieces + _WIDE.subn("", text)[1]


def _json_tokens(value: object) -> int:
    return estimate_tokens(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _content_tokens(content: object) -> int:
    if isinstance(content, str):
        return estimate_tokens(content)
    if isinstance(content, list):
        return sum(estimate_block_tokens(b) for b in content if isinstance(b, Mapping))
    return 0


def _source_tokens(source: object) -> int:
    if not isinstance(source, Mapping):
        return PDF_PAGE_TOKENS
    kind = source.get("type")
    if kind == "text":
        return estimate_tokens(str(source.get("data", "")))
    if kind == "content":
        return _content_tokens(source.get("content"))
    if kind == "base64":
        raw_bytes = len(str(source.get("data", ""))) * 3 // 4
        return max(1, math.ceil(raw_bytes / PDF_BYTES_PER_PAGE)) * PDF_PAGE_TOKENS
    return PDF_PAGE_TOKENS  # url / file: size unknown here, one page's worth


def estimate_block_tokens(block: Mapping) -> int:
    """Estimated tokens of one content block (text, image, document, tool_use, ...)."""
    kind = block.get("type")
    if kind == "text":
        return estimate_tokens(str(block.get("text", "")))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        return (
            estimate_tokens(str(block.get("title") or ""))
            + estimate_tokens(str(block.get("context") or ""))
            + _source_tokens(block.get("source"))
        )
    if kind == "search_result":
        return (
            estimate_tokens(str(block.get("title", "")))
            + estimate_tokens(str(block.get("source", "")))
            + _content_tokens(block.get("content"))
        )
    if kind == "tool_use":
        return estimate_tokens(str(block.get("name", ""))) + _json_tokens(block.get("input", {}))
    if kind == "tool_result":
        return 3 + _content_tokens(block.get("content", ""))
    if kind == "thinking":
        return estimate_tokens(str(block.get("thinking", "")))
    if kind == "redacted_thinking":
        return max(1, len(str(block.get("data", ""))) // 16)
    return _json_tokens(dict(block))


def estimate_tool_tokens(tool: Mapping) -> int:
    return TOOL_OVERHEAD + _json_tokens({k: v for k, v in tool.items() if k != "cache_control"})


def estimate_message_tokens(message: Mapping) -> int:
    return MESSAGE_OVERHEAD + _content_tokens(message.get("content"))


def estimate_request_tokens(
    *,
    messages: Iterable[Mapping] = (),
    system: str | Iterable[Mapping] | None = None,
    tools: Iterable[Mapping] | None = None,
) -> int:
    """Estimated input tokens of a Messages request (tools + system + messages)."""
    total = sum(estimate_tool_tokens(t) for t in tools or ())
    total += (
        _content_tokens(system) if isinstance(system, str) else _content_tokens(list(system or ()))
    )
    total += sum(estimate_message_tokens(m) for m in messages)
    return total
