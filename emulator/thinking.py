"""Extended thinking: the emulator's thinking text, its signatures and the history checks.

A thinking block's ``signature`` is an HMAC over the model id and the thinking text under a
fixed emulator key, laid out like the real opaque signatures (base64 starting ``Eq``). That
makes the real API's two history errors reproducible: a thinking block sent back modified, or
taken from another model, fails its signature; and with thinking on, the assistant turn whose
``tool_use`` results the last user turn carries must start with its thinking block.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
from typing import Any

# Fixed on purpose: signatures must verify across emulator restarts and processes (a batch
# result's thinking block is sent back to a live call). It authenticates nothing real.
_KEY = b"claudeapp-emulator-thinking-signature-v1"
_PAYLOAD_BYTES = 165  # with the 3-byte header: 168 bytes -> 224 base64 chars, no padding

THINKING_REQUIRED_MESSAGE = (
    "Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is "
    "enabled, a final `assistant` message must start with a thinking block (preceeding the "
    "lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking "
    "blocks from previous turns. To avoid this requirement, disable `thinking`. Please "
    "consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)
INVALID_SIGNATURE_MESSAGE = "Invalid `signature` in `thinking` block"


def signature_for(thinking_text: str, model: str) -> str:
    """The signature the emulator gives a thinking block of ``model`` with this text.

    Shaped like the real ones: a protobuf-like header (0x12, then a two-byte length) makes the
    base64 start with ``Eq``; the payload is the HMAC stretched to a realistic length.
    """
    message = model.encode() + b"\x00" + thinking_text.encode()
    digest = hmac.new(_KEY, message, hashlib.sha256).digest()
    payload = bytearray()
    counter = 0
    while len(payload) < _PAYLOAD_BYTES:
        payload += hmac.new(_KEY, digest + bytes([counter]), hashlib.sha256).digest()
        counter += 1
    header = bytes([0x12, 0x80 | (_PAYLOAD_BYTES & 0x7F), _PAYLOAD_BYTES >> 7])
    return base64.b64encode(header + digest + bytes(payload[: _PAYLOAD_BYTES - 32])).decode()


def verify_signature(thinking_text: str, model: str, signature: Any) -> bool:
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(signature, signature_for(thinking_text, model))


def _topic(prompt_text: str) -> str:
    text = " ".join(prompt_text.split())
    if not text:
        return "an empty message"
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first if len(first) <= 120 else first[:117].rstrip() + "..."


_OPENINGS = (
    'The user wrote: "{topic}".',
    'The request is: "{topic}".',
    'I am asked: "{topic}".',
)
_STEPS = (
    "I should work out what is actually being asked before answering.",
    "The key facts are in the conversation, so I will rely on them.",
    "A short, direct answer fits best here.",
    "I will check the answer against the question once more.",
    "Nothing here needs outside information.",
    "I should keep the reply consistent with the earlier turns.",
)


def make_thinking(
    prompt_text: str, model: str, budget_tokens: int | None, rng: random.Random
) -> str:
    """A short, deterministic reasoning text (the same ``rng`` state gives the same text).

    Kept well under any budget (>= 1024 tokens); the cap at ~4 characters a token only
    matters for callers that pass a tiny budget.
    """
    parts = [rng.choice(_OPENINGS).format(topic=_topic(prompt_text))]
    parts.extend(rng.sample(_STEPS, k=3))
    parts.append(f"(Offline emulator reasoning for {model}.)")
    text = " ".join(parts)
    if budget_tokens is not None and budget_tokens > 0:
        text = text[: max(1, budget_tokens * 4)]
    return text


def thinking_block(thinking_text: str, model: str) -> dict:
    """The response content block (non-streaming). Its stream (``thinking_delta`` s, one token
    each, then one ``signature_delta``) is ``emulator.model.thinking_reply_block``."""
    return {
        "type": "thinking",
        "thinking": thinking_text,
        "signature": signature_for(thinking_text, model),
    }


def thinking_mode(body: dict, always_on: bool = False) -> str | None:
    """``"enabled"`` / ``"adaptive"`` when the request thinks, else None.

    ``always_on`` is the model row's "thinking cannot be disabled" (Opus 5.5, Sonnet 5.5,
    Fable 5.1): those think adaptively even without a ``thinking`` field. ``between_tools``
    (Sonnet 5.5) counts as adaptive. Which modes a model accepts is part 1's validation.
    """
    config = body.get("thinking")
    kind = config.get("type") if isinstance(config, dict) else None
    if kind == "enabled":
        return "enabled"
    if kind in ("adaptive", "between_tools"):
        return "adaptive"
    if kind == "disabled":
        return None
    return "adaptive" if always_on else None


def _blocks(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def check_thinking_history(body: dict, model: str, *, always_on: bool = False) -> str | None:
    """The real API's 400 message for a bad thinking history, or None.

    1. Every ``thinking`` block in an assistant turn must carry the signature the emulator
       gave it for this model (``messages.i.content.j: Invalid `signature` in `thinking`
       block``) - whether thinking is on or not.
    2. With thinking on, when the last message is a user turn holding ``tool_result`` blocks,
       the assistant turn before it (the first of a run of consecutive assistant messages,
       which the API merges) must start with ``thinking`` or ``redacted_thinking``.

    Pass the canonical model id (dated aliases resolved) so aliases sign alike.
    """
    messages = body.get("messages") or []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if isinstance(block, dict) and block.get("type") == "thinking":
                text = block.get("thinking")
                if not isinstance(text, str) or not verify_signature(
                    text, model, block.get("signature")
                ):
                    return f"messages.{i}.content.{j}: {INVALID_SIGNATURE_MESSAGE}"

    if thinking_mode(body, always_on) is None or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    if not any(b.get("type") == "tool_result" for b in _blocks(last.get("content"))):
        return None
    first = len(messages) - 1
    while first > 0 and isinstance(messages[first - 1], dict):
        if messages[first - 1].get("role") != "assistant":
            break
        first -= 1
    if first == len(messages) - 1:
        return None  # no assistant turn before the tool results; part 1's pairing check
    blocks = _blocks(messages[first].get("content"))
    found = blocks[0].get("type") if blocks else "text"
    if found in ("thinking", "redacted_thinking"):
        return None
    return f"messages.{first}.content.0.type: " + THINKING_REQUIRED_MESSAGE.format(found=found)
