"""The door's server-sent-event reader: events split anywhere across chunks read alike."""

from __future__ import annotations

import json

import pytest

from claudeapp.claude.rawstream import SSEBuffer

EVENTS = [
    ("message_start", '{"type": "message_start"}'),
    ("ping", '{"type": "ping"}'),
    ("content_block_delta", '{"type": "content_block_delta", "delta": {"text": "a\\nb"}}'),
    ("message_stop", '{"type": "message_stop"}'),
]


def body(newline: bytes) -> bytes:
    out = b""
    for name, data in EVENTS:
        out += b"event: " + name.encode() + newline + b"data: " + data.encode() + newline + newline
    return out


def read(chunks: list[bytes]) -> list[tuple[str | None, str]]:
    sse = SSEBuffer()
    events = []
    for chunk in chunks:
        events += sse.feed(chunk)
    return events + sse.close()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_events_split_at_any_byte_read_the_same(newline: bytes, size: int) -> None:
    raw = body(newline)
    chunks = [raw[i : i + size] for i in range(0, len(raw), size)]
    assert read(chunks) == EVENTS


def test_multi_line_data_comments_and_other_fields() -> None:
    raw = b": keep-alive\n\nid: 7\nretry: 10\nevent: x\ndata:first\ndata: second\n\n"
    assert read([raw]) == [("x", "first\nsecond")]


def test_a_body_ending_without_its_blank_line_still_gives_its_last_event() -> None:
    assert read([b'event: message_stop\ndata: {"type": "message_stop"}']) == [
        ("message_stop", '{"type": "message_stop"}')
    ]


def test_utf8_split_inside_a_character() -> None:
    text = json.dumps({"t": "héllo ✓"}, ensure_ascii=False).encode()
    raw = b"event: e\ndata: " + text + b"\n\n"
    cut = raw.index("✓".encode()) + 1
    assert read([raw[:cut], raw[cut:]]) == [("e", text.decode())]
