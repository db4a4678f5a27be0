"""The deterministic "model": the same request (and ``--seed``) always gets the same reply.

Three shapes of reply:

* plain chat: a text that quotes the last user turn and says plainly that it comes from the
  offline emulator (it always starts with ``[offline emulator]``); its length, between a few
  tens and a few hundred tokens, is chosen by hash;
* structured output (``output_config.format``): JSON valid against the schema, see
  :mod:`emulator.structured`;
* forced tools (``tool_choice`` ``any``/``tool``): one ``tool_use`` block whose input is valid
  against the tool's ``input_schema``.

``max_tokens`` and ``stop_sequences`` cut the output the way the API does. A reply is a list of
:class:`Block` s, each with its stream deltas pre-split into about one token per delta, so the
SSE writer and the non-streaming path share one source of truth.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from functools import cached_property

from .errors import new_id
from .structured import Context, generate, violate
from .tokens import canonical_json, output_pieces, text_tokens

__all__ = [
    "Block",
    "Reply",
    "generate_reply",
    "last_user_text",
    "request_salt",
    "text_block",
    "tool_use_block",
    "user_text",
]

MARK = "[offline emulator]"


@dataclass
class Block:
    start: dict  # the ``content_block`` of content_block_start
    deltas: list[tuple[dict, bool]]  # (delta, counts as one output token)
    final: dict  # the block as a non-streaming Message holds it

    @cached_property
    def tokens(self) -> int:
        return sum(1 for _, counted in self.deltas if counted)


@dataclass
class Reply:
    blocks: list[Block]
    stop_reason: str
    stop_sequence: str | None = None
    stop_details: dict | None = None
    # Tokens the model produced but did not stream (e.g. omitted thinking): part 2 sets these.
    hidden_output_tokens: int = 0
    thinking_tokens: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def streamed_tokens(self) -> int:
        return sum(b.tokens for b in self.blocks)

    @property
    def output_tokens(self) -> int:
        return self.streamed_tokens + self.hidden_output_tokens

    @property
    def content(self) -> list[dict]:
        return [b.final for b in self.blocks]


def text_block(text: str) -> Block:
    deltas = [({"type": "text_delta", "text": p}, True) for p in output_pieces(text)]
    return Block({"type": "text", "text": ""}, deltas, {"type": "text", "text": text})


def tool_use_block(name: str, tool_input: dict, pieces: list[str] | None = None) -> Block:
    """A tool_use block; ``pieces`` (a possibly truncated split of the JSON) defaults to all."""
    tool_id = new_id("toolu_01", 22)
    caller = {"type": "direct"}
    if pieces is None:
        pieces = output_pieces(json.dumps(tool_input))
    deltas = [({"type": "input_json_delta", "partial_json": ""}, False)]
    deltas += [({"type": "input_json_delta", "partial_json": p}, True) for p in pieces]
    start = {"type": "tool_use", "id": tool_id, "name": name, "input": {}, "caller": caller}
    final = {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input, "caller": caller}
    return Block(start, deltas, final)


# --- reading the request -----------------------------------------------------------------------


def _block_text(block: dict) -> list[str]:
    kind = block.get("type")
    if kind == "text":
        return [str(block.get("text", ""))]
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, str):
            return [content]
        return [t for b in content if isinstance(b, dict) for t in _block_text(b)]
    if kind == "search_result":
        return [
            t for b in block.get("content") or [] if isinstance(b, dict) for t in _block_text(b)
        ]
    if kind == "document":
        src = block.get("source") or {}
        if src.get("type") == "text":
            return [str(src.get("data", ""))]
        if src.get("type") == "content":
            content = src.get("content")
            if isinstance(content, str):
                return [content]
            return [t for b in content or [] if isinstance(b, dict) for t in _block_text(b)]
    return []


def _message_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for b in content if isinstance(b, dict) for t in _block_text(b))
    return ""


def last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


def user_text(body: dict) -> str:
    """All user-turn text (documents included): what labels are scored against."""
    return "\n".join(
        _message_text(m)
        for m in body.get("messages") or []
        if isinstance(m, dict) and m.get("role") == "user"
    )


def request_salt(body: dict, seed: int) -> bytes:
    keys = ("model", "system", "messages", "tools", "tool_choice", "output_config")
    raw = canonical_json({k: body.get(k) for k in keys})
    return hashlib.blake2b(raw.encode(), digest_size=16, key=str(seed).encode()[:64]).digest()


# --- plain chat ----------------------------------------------------------------------------------

_OPENERS = (
    'You wrote: "{quote}"',
    'Replying to "{quote}"',
    'Your message was: "{quote}"',
    'Quoting your last turn: "{quote}"',
)
_SENTENCES = (
    'The key term here seems to be "{a}".',
    "A live model would weigh {a} against {b} before answering.",
    "This reply only reflects your own words back, such as {a} and {b}.",
    "If {a} is the real question, a narrower prompt about {b} would help.",
    "Nothing in this text comes from Claude; it is put together deterministically.",
    "Set ANTHROPIC_API_KEY to get a real answer about {a}.",
    "The same input always produces this same reply, which keeps tests repeatable.",
    "Think of {a} as the first step and {b} as the second.",
    "In short: {a}.",
    "Your message has {n} words; the emulator quoted the start of it.",
    "A fuller answer would explain how {a} relates to {b}, with an example or two.",
    "One useful next step is to check what {a} means in your context.",
)
_TARGETS = (24, 36, 48, 64, 80, 100, 130, 170, 220, 280)


def _shorten(text: str, n_words: int) -> str:
    ws = text.split()
    if not ws:
        return "(no text)"
    return " ".join(ws[:n_words]) + (" ..." if len(ws) > n_words else "")


def chat_text(body: dict, ctx: Context) -> str:
    last = last_user_text(body)
    rng = random.Random(int.from_bytes(ctx.salt[:8]))
    parts = [f"{MARK} " + rng.choice(_OPENERS).format(quote=_shorten(last, 40))]
    kw = ctx.keywords
    target = rng.choice(_TARGETS)
    n_words = len(last.split())
    order = list(_SENTENCES)
    rng.shuffle(order)
    i = 0
    tokens = text_tokens(parts[0])
    # Sentences cycle without repeats until the target length; keyword pairs shift each round.
    while tokens < target:
        a = kw[i % len(kw)]
        b = kw[(i + 1) % len(kw)] if len(kw) > 1 else "the details"
        parts.append(order[i % len(order)].format(a=a, b=b, n=n_words))
        tokens += text_tokens(parts[-1])
        i += 1
    return " ".join(parts)


# --- putting it together -------------------------------------------------------------------------


def _cut_text(text: str, max_tokens: int, stops: list[str]) -> tuple[str, str, str | None]:
    hits = [(text.find(s), s) for s in stops if s and s in text]
    if hits:
        idx, seq = min(hits)
        cut = text[:idx]
        if len(output_pieces(cut)) <= max_tokens if cut else True:
            return cut, "stop_sequence", seq
    pieces = output_pieces(text) if text else []
    if len(pieces) > max_tokens:
        return "".join(pieces[:max_tokens]), "max_tokens", None
    return text, "end_turn", None


def _forced_tool(body: dict, ctx: Context) -> dict:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool":
        return next(t for t in tools if t.get("name") == choice.get("name"))
    custom = [t for t in tools if t.get("type") in (None, "custom")] or tools
    # "any": the tool whose name and description the input mentions most (ties by hash).
    from .structured import choose_label

    name = choose_label(
        [t["name"] for t in custom], {t["name"]: str(t.get("description", "")) for t in custom}, ctx
    )
    return next(t for t in custom if t["name"] == name)


def generate_reply(
    body: dict,
    seed: int = 0,
    *,
    refusal: dict | None = None,
    invalid_output: bool = False,
) -> Reply:
    """The reply to a validated Messages request. ``refusal`` / ``invalid_output`` are faults."""
    ctx = Context(user_text(body), request_salt(body, seed))
    max_tokens = int(body.get("max_tokens", 0))
    stops = [s for s in body.get("stop_sequences") or [] if isinstance(s, str)]
    choice = body.get("tool_choice") or {}
    fmt = (body.get("output_config") or {}).get("format")
    structured = fmt is not None or choice.get("type") in ("any", "tool")

    if refusal is not None:
        blocks = []
        if not structured:
            keep = int(refusal.get("after_tokens", 5))
            pieces = output_pieces(chat_text(body, ctx))[: min(keep, max_tokens)]
            if pieces:
                blocks.append(text_block("".join(pieces)))
        details = {
            "type": "refusal",
            "category": refusal.get("category"),
            "explanation": refusal.get(
                "explanation", "The offline emulator refused this request (injected fault)."
            ),
        }
        return Reply(blocks, "refusal", stop_details=details)

    if choice.get("type") in ("any", "tool"):
        tool = _forced_tool(body, ctx)
        schema = tool.get("input_schema") or {"type": "object"}
        value = generate(schema, ctx)
        if invalid_output:
            value = violate(schema, value)
        pieces = output_pieces(json.dumps(value))
        if len(pieces) > max_tokens:
            # Cut off mid-arguments: the stream carries the partial JSON, the final block {}.
            block = tool_use_block(tool["name"], {}, pieces[:max_tokens])
            return Reply([block] if max_tokens else [], "max_tokens")
        tool_input = value if isinstance(value, dict) else {"value": value}
        return Reply([tool_use_block(tool["name"], tool_input, pieces)], "tool_use")

    if fmt is not None:
        value = generate(fmt["schema"], ctx)
        if invalid_output:
            value = violate(fmt["schema"], value)
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = chat_text(body, ctx)
    text, stop_reason, stop_sequence = _cut_text(text, max_tokens, stops)
    blocks = [text_block(text)] if text else []
    return Reply(blocks, stop_reason, stop_sequence)
