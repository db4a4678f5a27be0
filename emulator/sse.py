"""Server-sent events, pre-rendered to bytes before the first one is sent.

Every event carries an ``event:`` line (the SDK drops events without one). A reply renders to a
:class:`Rendered`: the preamble (``message_start``, the first ``content_block_start``, a
``ping``) goes out at once, then one slot per output token (the token's delta plus any
non-token events after it: block stops and starts, citations, signatures, pings), then the
trailer (``message_delta`` with cumulative usage, ``message_stop``). The pacing loop therefore
does one write per token and no JSON work while streaming.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii

from .model import Reply

__all__ = ["PING", "PING_EVERY", "Rendered", "error_event", "event", "render"]

# A ping after the first block starts (as the real API does), then one every this many tokens.
PING_EVERY = 100


_dumps = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per call
# The two delta shapes that make up nearly every event get their JSON written directly.
_STRING_DELTAS = {
    "text_delta": "text",
    "input_json_delta": "partial_json",
    "thinking_delta": "thinking",
}


def _delta_json(delta: dict) -> str:
    kind = delta.get("type")
    key = _STRING_DELTAS.get(kind)
    if key is not None and len(delta) == 2 and isinstance(delta.get(key), str):
        return f'{{"type":"{kind}","{key}":{encode_basestring_ascii(delta[key])}}}'
    return _dumps(delta)


def event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()


PING = event("ping", {"type": "ping"})


def error_event(error_type: str, message: str, request_id: str) -> bytes:
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return event("error", {**body, "request_id": request_id})


@dataclass
class Rendered:
    preamble: bytes
    slots: list[bytes]  # slots[i]: the (i+1)-th output token and the events that follow it
    trailer: bytes

    @property
    def tokens(self) -> int:
        return len(self.slots)

    def whole(self) -> bytes:
        return self.preamble + b"".join(self.slots) + self.trailer


def render(message_start: dict, reply: Reply, delta_usage: dict) -> Rendered:
    """Render ``reply`` as a stream; ``delta_usage`` is message_delta's cumulative usage."""
    pending: list[bytes] = [
        event("message_start", {"type": "message_start", "message": message_start})
    ]
    preamble: bytes | None = None
    slots: list[bytes] = []
    pinged = False
    for index, block in enumerate(reply.blocks):
        start = {"type": "content_block_start", "index": index, "content_block": block.start}
        pending.append(event("content_block_start", start))
        if not pinged:
            pending.append(PING)
            pinged = True
        head = (
            "event: content_block_delta\ndata: "
            f'{{"type":"content_block_delta","index":{index},"delta":'
        )
        for delta, counted in block.deltas:
            chunk = f"{head}{_delta_json(delta)}}}\n\n".encode()
            if counted:
                if preamble is None:
                    preamble = b"".join(pending)
                else:
                    slots.append(b"".join(pending))
                pending = [chunk]
                if len(slots) % PING_EVERY == PING_EVERY - 1:
                    pending.append(PING)
            else:
                pending.append(chunk)
        pending.append(event("content_block_stop", {"type": "content_block_stop", "index": index}))
    if not pinged:
        pending.append(PING)
    if preamble is None:
        preamble = b"".join(pending)
    else:
        slots.append(b"".join(pending))
    delta = {
        "type": "message_delta",
        "delta": {
            "stop_reason": reply.stop_reason,
            "stop_sequence": reply.stop_sequence,
            "stop_details": reply.stop_details,
        },
        "usage": delta_usage,
    }
    trailer = event("message_delta", delta) + event("message_stop", {"type": "message_stop"})
    return Rendered(preamble, slots, trailer)
