"""Deterministic token counting: one counter behind count_tokens and ``usage.input_tokens``.

The rule (documented because the prompt cache and the app's estimates rely on it):

* Text: one token per word piece of at most 8 word characters, plus one per punctuation or
  symbol character; whitespace is free. ``"classification"`` is 2 tokens, ``"Hello, world!"``
  is 4. For English prose that is close to the usual "about 4 characters per token".
* Each request is cut into :class:`Segment` s, in prompt order tools -> system -> messages: one
  per tool definition, per system block and per message content block (string content counts
  as one text block). A message's role overhead (:data:`MESSAGE_OVERHEAD`) is folded into its
  first block, a tool's framing (:data:`TOOL_OVERHEAD`) into its own segment, so
  ``count_request_tokens(body) == sum(s.tokens for s in request_segments(body))`` exactly and
  ``input + cache writes + cache reads == count_tokens`` can hold exactly.
* Images count ``ceil(w*h/750)`` after the API's downscaling (long edge 1568 px, about 1.15 MP),
  their size read by :func:`emulator.images.sniff_size`;
  PDFs :data:`PDF_PAGE_TOKENS` per page; text documents by their text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass

from . import images

__all__ = [
    "MESSAGE_OVERHEAD",
    "TOOL_OVERHEAD",
    "Segment",
    "block_tokens",
    "canonical_json",
    "count_request_tokens",
    "output_pieces",
    "request_segments",
    "text_tokens",
]

MESSAGE_OVERHEAD = 3
TOOL_OVERHEAD = 8
TOOL_RESULT_OVERHEAD = 3
IMAGE_FALLBACK_TOKENS = 1600  # url/file sources: size unknown, so the per-image maximum
PDF_PAGE_TOKENS = 1500
DOCUMENT_FALLBACK_TOKENS = 1500

_PIECE = re.compile(r"\w{1,8}|[^\w\s]")
# The same pieces with their leading whitespace, so that output text can be streamed one token
# per delta and ``"".join(pieces) == text``.
_OUT_PIECE = re.compile(r"\s*(?:\w{1,8}|[^\w\s])")


def text_tokens(text: str) -> int:
    """Tokens in ``text`` under the rule in the module docstring."""
    if len(text) >= _MEMO_MIN_CHARS:
        return _long_text_tokens(text)
    return len(_PIECE.findall(text))


# Long texts (instructions, documents) come back again and again: in every turn of a chat and
# every line of a batch. Counting them once keeps a 10,000-line batch cheap.
_MEMO_MIN_CHARS = 2048


@functools.lru_cache(maxsize=256)
def _long_text_tokens(text: str) -> int:
    return len(_PIECE.findall(text))


def output_pieces(text: str) -> list[str]:
    """``text`` split into one piece per token, whitespace kept (trailing blanks join the last)."""
    pieces = _OUT_PIECE.findall(text)
    consumed = sum(map(len, pieces))
    if consumed < len(text):
        if pieces:
            pieces[-1] += text[consumed:]
        else:
            pieces = [text]
    return pieces


def canonical_json(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Segment:
    kind: str  # "tool", "system", or the message block's type ("text", "image", ...)
    tokens: int
    cache_control: dict | None
    fingerprint: str  # hash of the segment's canonical JSON without cache_control


def _strip_cache_control(block: dict) -> dict:
    stripped = {k: v for k, v in block.items() if k != "cache_control"}
    inner = stripped.get("content")
    if stripped.get("type") == "tool_result" and isinstance(inner, list):
        stripped["content"] = [_strip_cache_control(b) if isinstance(b, dict) else b for b in inner]
    return stripped


_PLAIN_TEXT_KEYS = frozenset({"type", "text", "cache_control"})


def _fingerprint(kind: str, role: str | None, block: dict) -> str:
    text = block.get("text")
    if block.get("type") == "text" and isinstance(text, str) and block.keys() <= _PLAIN_TEXT_KEYS:
        # The common case without a JSON dump (long system prompts, every turn, every line).
        raw = f"text\x00{kind}\x00{role}\x00{text}"
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()
    stripped = _strip_cache_control(block)
    raw = canonical_json({"kind": kind, "role": role, "block": stripped})
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def _content_tokens(content: object) -> int:
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        return sum(block_tokens(b) for b in content if isinstance(b, dict))
    return 0


def block_tokens(block: dict) -> int:
    """Tokens of one content block (no role overhead)."""
    kind = block.get("type")
    if kind == "text":
        return text_tokens(str(block.get("text", "")))
    if kind == "image":
        return _image_tokens(block.get("source"))
    if kind == "document":
        extra = text_tokens(str(block.get("title") or "")) + text_tokens(
            str(block.get("context") or "")
        )
        return extra + _document_tokens(block.get("source"))
    if kind == "search_result":
        return (
            text_tokens(str(block.get("title", "")))
            + text_tokens(str(block.get("source", "")))
            + _content_tokens(block.get("content"))
        )
    if kind == "tool_use":
        return text_tokens(str(block.get("name", ""))) + text_tokens(
            canonical_json(block.get("input", {}))
        )
    if kind == "tool_result":
        return TOOL_RESULT_OVERHEAD + _content_tokens(block.get("content", ""))
    if kind == "thinking":
        return text_tokens(str(block.get("thinking", "")))
    if kind == "redacted_thinking":
        return max(1, len(str(block.get("data", ""))) // 16)
    return text_tokens(canonical_json(block))


def tool_tokens(tool: dict) -> int:
    stripped = {k: v for k, v in tool.items() if k != "cache_control"}
    return TOOL_OVERHEAD + text_tokens(canonical_json(stripped))


def _as_blocks(content: object) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def block_cache_control(block: dict) -> dict | None:
    """The breakpoint a message block carries: its own ``cache_control``, or for a tool_result
    the last one among its content blocks (segments end at whole blocks, so a breakpoint inside
    a tool_result is placed at the tool_result's end)."""
    if block.get("cache_control") is not None:
        return block["cache_control"]
    inner = block.get("content")
    if block.get("type") == "tool_result" and isinstance(inner, list):
        for sub in reversed(inner):
            if isinstance(sub, dict) and sub.get("cache_control") is not None:
                return sub["cache_control"]
    return None


def request_segments(body: dict) -> list[Segment]:
    """Segments of a Messages (or count_tokens) request, in order tools -> system -> messages."""
    segments: list[Segment] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            segments.append(
                Segment("tool", tool_tokens(tool), tool.get("cache_control"),
                        _fingerprint("tool", None, tool))
            )  # fmt: skip
    for block in _as_blocks(body.get("system")):
        segments.append(
            Segment("system", block_tokens(block), block.get("cache_control"),
                    _fingerprint("system", None, block))
        )  # fmt: skip
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        blocks = _as_blocks(message.get("content"))
        if not blocks:
            # An empty content list still costs its role overhead; keep it in a segment so the
            # sum stays exact.
            segments.append(
                Segment("empty", MESSAGE_OVERHEAD, None, _fingerprint("empty", role, {}))
            )
            continue
        for i, block in enumerate(blocks):
            kind = str(block.get("type", "unknown"))
            tokens = block_tokens(block) + (MESSAGE_OVERHEAD if i == 0 else 0)
            segments.append(
                Segment(kind, tokens, block_cache_control(block), _fingerprint(kind, role, block))
            )
    return segments


def count_request_tokens(body: dict) -> int:
    return sum(s.tokens for s in request_segments(body))


# --- images and documents -------------------------------------------------------------------


def image_tokens_for_size(width: int, height: int) -> int:
    """Tokens for an image after the API's downscaling (long edge 1568 px, ~1.15 MP)."""
    scale = min(1.0, 1568 / max(width, height, 1), math.sqrt(1_150_000 / max(width * height, 1)))
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    return max(1, math.ceil(w * h / 750))


def _image_tokens(source: object) -> int:
    if isinstance(source, dict) and source.get("type") == "base64":
        try:
            _, width, height = images.sniff_size(images.decode(str(source.get("data", ""))))
        except images.ImageError:
            pass  # validation rejects it (images.check_images); count it like an unknown size
        else:
            return image_tokens_for_size(width, height)
    return IMAGE_FALLBACK_TOKENS


def _document_tokens(source: object) -> int:
    if not isinstance(source, dict):
        return DOCUMENT_FALLBACK_TOKENS
    kind = source.get("type")
    if kind == "text":
        return text_tokens(str(source.get("data", "")))
    if kind == "content":
        return _content_tokens(source.get("content"))
    if kind == "base64":
        try:
            raw = base64.b64decode(str(source.get("data", "")), validate=False)
        except (binascii.Error, ValueError):
            raw = b""
        pages = len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", raw))
        return PDF_PAGE_TOKENS * max(1, pages)
    return DOCUMENT_FALLBACK_TOKENS
