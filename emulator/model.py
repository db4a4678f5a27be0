"""The deterministic "model": the same request (and ``--seed``) always gets the same reply.

Which reply, in this order (the first that applies wins):

1. a ``refusal`` fault: a few tokens of the chat reply, then ``stop_reason: refusal``;
2. the obey trigger (:mod:`emulator.instructions`): a line ``EMULATOR-OBEY: <text>`` in a
   system or user text block makes the reply exactly ``<text>`` (never one inside a document,
   search result or tool result);
3. forced tools (``tool_choice`` ``any``/``tool``): one ``tool_use`` block whose input is valid
   against the tool's ``input_schema``;
4. an automatic tool call (:mod:`emulator.tools`, ``tool_choice`` auto): the user turn names a
   tool or asks for what it does, or the loop trigger is on (without thinking, a one-line
   text preamble comes first);
5. structured output (``output_config.format``): JSON valid against the schema, see
   :mod:`emulator.structured`;
6. after ``tool_result`` s: an answer quoting them (errors acknowledged as errors), or a cited
   answer when the results carry citable search results or documents;
7. a cited answer (:mod:`emulator.citations`) when documents / search results have citations on;
8. plain chat: a text that quotes the last user turn and says plainly that it comes from the
   offline emulator (it always starts with ``[offline emulator]``), stating the real pixel
   sizes of the images in that turn; its length, a few tens to a few hundred tokens, is chosen
   by hash.

With thinking on (``enabled``, ``adaptive`` and always-on models), a thinking block whose
signature binds its text to the model (:mod:`emulator.thinking`) comes first. Adaptive thinking
is skipped when it would take more than a quarter of ``max_tokens`` (the model "decides" not to
think for a tiny budget), so small test calls still get their text.

``max_tokens`` and ``stop_sequences`` cut the output the way the API does. A reply is a list of
:class:`Block` s, each with its stream deltas pre-split into one output token per counted delta
(text, thinking and tool-input JSON alike), so ``usage.output_tokens`` is the number of counted
deltas (plus omitted thinking), and the SSE writer and the non-streaming path share one source
of truth.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from functools import cached_property

from . import citations, images, instructions, models_table, thinking, tools
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


def text_block(
    text: str, citations: list[dict] | None = None, pieces: list[str] | None = None
) -> Block:
    """A text block; its citations (if any) stream first as ``citations_delta`` events.
    ``pieces`` is ``output_pieces(text)`` when the caller has it already."""
    if pieces is None:
        pieces = output_pieces(text)
    deltas = [({"type": "citations_delta", "citation": c}, False) for c in citations or []]
    deltas += [({"type": "text_delta", "text": p}, True) for p in pieces]
    final = {"type": "text", "text": text}
    if citations:
        final["citations"] = citations
    return Block({"type": "text", "text": ""}, deltas, final)


def tool_use_block(
    name: str, tool_input: dict, pieces: list[str] | None = None, tool_id: str | None = None
) -> Block:
    """A tool_use block; ``pieces`` (a possibly truncated split of the JSON) defaults to all.

    The input streams as ``input_json_delta`` fragments, one output token each, after an empty
    first fragment as the real API sends.
    """
    tool_id = tool_id or new_id("toolu_01", 22)
    caller = {"type": "direct"}
    if pieces is None:
        pieces = output_pieces(json.dumps(tool_input))
    deltas = [({"type": "input_json_delta", "partial_json": ""}, False)]
    deltas += [({"type": "input_json_delta", "partial_json": p}, True) for p in pieces]
    start = {"type": "tool_use", "id": tool_id, "name": name, "input": {}, "caller": caller}
    final = {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input, "caller": caller}
    return Block(start, deltas, final)


def thinking_reply_block(text: str, model: str, pieces: list[str] | None = None) -> Block:
    """A thinking block: ``thinking_delta`` s (one token each), then one ``signature_delta``.

    ``pieces=[]`` with a text is omitted thinking (``display: "omitted"``): the block carries
    no text, only a signature (over the empty text, so it verifies when sent back).
    """
    if pieces is None:
        pieces = output_pieces(text)
    final = thinking.thinking_block(text, model)
    deltas = [({"type": "thinking_delta", "thinking": p}, True) for p in pieces]
    deltas.append(({"type": "signature_delta", "signature": final["signature"]}, False))
    return Block({"type": "thinking", "thinking": "", "signature": ""}, deltas, final)


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


@dataclass
class _Part:
    """One block of a reply before ``max_tokens`` and ``stop_sequences`` cut it."""

    kind: str  # "thinking" | "text" | "tool_use"
    text: str = ""  # thinking or text
    citations: list[dict] | None = None
    tool: dict | None = None  # {"id", "name", "input"}
    hidden: bool = False  # omitted thinking: costs output tokens, streams no text

    def pieces(self) -> list[str]:
        if self.kind == "tool_use":
            assert self.tool is not None
            return output_pieces(json.dumps(self.tool["input"]))
        return output_pieces(self.text) if self.text else []


def _forced_tool(body: dict, ctx: Context) -> dict:
    tools_ = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool":
        return next(t for t in tools_ if t.get("name") == choice.get("name"))
    custom = [t for t in tools_ if t.get("type") in (None, "custom")] or tools_
    # "any": the tool whose name and description the input mentions most (ties by hash).
    from .structured import choose_label

    name = choose_label(
        [t["name"] for t in custom], {t["name"]: str(t.get("description", "")) for t in custom}, ctx
    )
    return next(t for t in custom if t["name"] == name)


def _tool_part(body: dict, name: str, value: object) -> _Part:
    tool_input = value if isinstance(value, dict) else {"value": value}
    call = {"id": tools.tool_use_id(body, name), "name": name, "input": tool_input}
    return _Part("tool_use", tool=call)


def _thinking_part(body: dict, model: str, ctx: Context, always_on: bool) -> _Part | None:
    mode = thinking.thinking_mode(body, always_on)
    if mode is None:
        return None
    config = body.get("thinking") if isinstance(body.get("thinking"), dict) else {}
    budget = config.get("budget_tokens") if mode == "enabled" else None
    rng = random.Random(int.from_bytes(ctx.salt[8:16]))
    prompt = tools.latest_user_text(body) or last_user_text(body)
    text = thinking.make_thinking(prompt, model, budget, rng)
    if mode == "adaptive" and text_tokens(text) > int(body.get("max_tokens", 0)) // 4:
        return None
    return _Part("thinking", text, hidden=config.get("display") == "omitted")


def _chat_part(body: dict, ctx: Context) -> _Part:
    text = chat_text(body, ctx)
    seen = images.describe_images(body)
    if seen:
        text = f"{MARK} {seen}{text[len(MARK) :]}"
    return _Part("text", text)


def _answer_parts(
    body: dict, ctx: Context, invalid_output: bool, *, thinks: bool
) -> tuple[list[_Part], str]:
    """The reply's own blocks (after any thinking) and its stop_reason, by the order in the
    module docstring. Without thinking, an automatic tool call follows a one-line preamble,
    as models often say what they are about to do (thinking models think it instead)."""
    obey = instructions.find_obey(body)
    if obey is not None:
        return [_Part("text", obey)], "end_turn"

    choice = body.get("tool_choice") or {}
    if choice.get("type") in ("any", "tool"):
        tool = _forced_tool(body, ctx)
        schema = tool.get("input_schema") or {"type": "object"}
        value = generate(schema, ctx)
        if invalid_output:
            value = violate(schema, value)
        return [_tool_part(body, tool["name"], value)], "tool_use"

    def instance_for(schema: dict, text: str) -> object:
        value = generate(schema, Context(text, ctx.salt))
        return violate(schema, value) if invalid_output else value

    call = tools.plan_tool_call(body, instance_for)
    if call is not None:
        part = _tool_part(body, call["name"], call["input"])
        preamble = [] if thinks else [_Part("text", tools.tool_preamble(call))]
        return [*preamble, part], "tool_use"

    fmt = (body.get("output_config") or {}).get("format")
    if fmt is not None:
        value = generate(fmt["schema"], ctx)
        if invalid_output:
            value = violate(fmt["schema"], value)
        return [_Part("text", json.dumps(value, ensure_ascii=False))], "end_turn"

    question = tools.latest_user_text(body)
    if tools.last_user_has_tool_result(body):
        if citations.last_turn_has_citable_results(body):
            cited = citations.cited_answer(question, body)
            return [_Part("text", b["text"], b.get("citations")) for b in cited], "end_turn"
        return [_Part("text", tools.answer_after_tool_result(body))], "end_turn"

    cited = citations.cited_answer(question, body)
    if cited:
        return [_Part("text", b["text"], b.get("citations")) for b in cited], "end_turn"
    return [_chat_part(body, ctx)], "end_turn"


def _finish(
    parts: list[_Part], stop_reason: str, max_tokens: int, stops: list[str], model: str
) -> Reply:
    """Cut ``parts`` at the first stop sequence (in text) or at ``max_tokens`` and build them."""
    stop_sequence = None
    for n, part in enumerate(parts):
        if part.kind != "text":
            continue
        hits = [(part.text.find(s), s) for s in stops if s and s in part.text]
        if not hits:
            continue
        idx, seq = min(hits)
        cut = [*parts[:n], _Part("text", part.text[:idx], part.citations)]
        if sum(len(p.pieces()) for p in cut) <= max_tokens:
            parts, stop_reason, stop_sequence = cut, "stop_sequence", seq
        break

    blocks: list[Block] = []
    budget = max_tokens
    hidden = thinking_tokens = 0
    for part in parts:
        pieces = part.pieces()
        whole = len(pieces) <= budget
        kept = pieces if whole else pieces[:budget]
        budget -= len(kept)
        if not whole:
            stop_reason, stop_sequence = "max_tokens", None
        if part.kind == "thinking":
            thinking_tokens += len(kept)
            text = "".join(kept)
            if part.hidden:
                hidden += len(kept)
                blocks.append(thinking_reply_block("", model, []))
            elif kept:
                blocks.append(thinking_reply_block(text, model, kept))
        elif part.kind == "tool_use" and kept:
            assert part.tool is not None
            # Cut off mid-arguments: the stream carries the partial JSON, the final block {}.
            tool_input = part.tool["input"] if whole else {}
            blocks.append(tool_use_block(part.tool["name"], tool_input, kept, part.tool["id"]))
        elif part.kind == "text" and kept:
            blocks.append(text_block("".join(kept), part.citations, kept))
        if not whole:
            break
    return Reply(
        blocks,
        stop_reason,
        stop_sequence,
        hidden_output_tokens=hidden,
        thinking_tokens=thinking_tokens,
    )


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

    spec = models_table.resolve(str(body.get("model", "")))
    model = spec.id if spec else str(body.get("model", ""))
    always_on = spec is not None and models_table.DISABLED not in spec.thinking
    head = _thinking_part(body, model, ctx, always_on)
    parts, stop_reason = _answer_parts(body, ctx, invalid_output, thinks=head is not None)
    if head is not None:
        parts = [head, *parts]
    return _finish(parts, stop_reason, max_tokens, stops, model)
