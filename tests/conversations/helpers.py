"""Helpers for the chat tests: socket frames, what a page shows of a stream, waiting."""

from __future__ import annotations

import html
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

# Live tests commit their data (the servers and the worker read it); the seeded registry, prices
# and personas come back with the same keys before each test (the autouse `reference_data` fixture).
live = pytest.mark.django_db(transaction=True)


@dataclass
class Frame:
    at: float
    html: str


@dataclass
class ChatSocket:
    """A websocket client on a conversation, keeping every frame it received with its time."""

    socket: object
    frames: list[Frame] = field(default_factory=list)

    def send(self, **data) -> float:
        sent = time.monotonic()
        self.socket.send(json.dumps(data))
        return sent

    def send_message(self, content: str) -> float:
        return self.send(action="send", content=content, HEADERS={})

    def recv(self, timeout: float = 10.0) -> Frame:
        text = self.socket.recv(timeout=timeout)
        frame = Frame(time.monotonic(), text)
        self.frames.append(frame)
        return frame

    def until(self, predicate: Callable[[Frame], bool], timeout: float = 30.0) -> Frame:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no matching frame within {timeout} s; got {len(self.frames)}:\n"
                    + "\n".join(f.html[:300] for f in self.frames[-5:])
                )
            frame = self.recv(timeout=left)
            if predicate(frame):
                return frame

    def until_done(self, message_id: object | None = None, timeout: float = 30.0) -> Frame:
        return self.until(lambda f: is_done_frame(f.html, message_id), timeout)

    def close(self) -> None:
        self.socket.close()


DONE = re.compile(
    r'<article class="msg msg-assistant[^"]*" id="m-([0-9a-f-]+)" data-role="assistant" '
    r'data-message-id="[0-9a-f-]+" data-status="(\w+)" hx-swap-oob="true"'
)
START = re.compile(
    r'id="m-([0-9a-f-]+)" data-role="assistant" data-message-id="[^"]+" data-status="streaming"'
)


def is_done_frame(text: str, message_id: object | None = None) -> bool:
    for match in DONE.finditer(text):
        if match.group(2) != "streaming" and (
            message_id is None or match.group(1) == str(message_id)
        ):
            return True
    return False


def done_status(text: str) -> str:
    match = next(m for m in DONE.finditer(text) if m.group(2) != "streaming")
    return match.group(2)


def shown_complete(frames: list[Frame], message_id: object) -> bool:
    """Whether any frame presented the reply as complete."""
    needle = f'data-message-id="{message_id}" data-status="complete"'
    return any(needle in frame.html for frame in frames)


def started_id(frames: list[Frame]) -> str:
    for frame in frames:
        match = START.search(frame.html)
        if match:
            return match.group(1)
    raise AssertionError("no reply started")


def _strip_tags(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))


class StreamView:
    """What a page shows of one streaming reply, rebuilt from the fragments it was sent."""

    def __init__(self, dom: str) -> None:
        self.dom = dom
        self.blocks = ""
        self.tail = ""
        self.thinking = ""
        self.updates = 0

    def apply(self, text: str) -> bool:
        dom = re.escape(self.dom)
        touched = False
        # A whole streaming message (a page, or a sync answer): its parts as they stand.
        whole = re.search(
            rf'<span id="{dom}-thinking">([^<]*)</span>.*?'
            rf'<div id="{dom}-blocks" class="stream-blocks">(.*?)</div>'
            rf'<span id="{dom}-tail" class="stream-tail">([^<]*)</span>',
            text,
            re.S,
        )
        if whole:
            self.thinking = html.unescape(whole.group(1))
            self.blocks = whole.group(2)
            self.tail = html.unescape(whole.group(3))
            touched = True
        for match in re.finditer(
            rf'<span id="{dom}-thinking" hx-swap-oob="(innerHTML|beforeend)">([^<]*)</span>', text
        ):
            value = html.unescape(match.group(2))
            self.thinking = value if match.group(1) == "innerHTML" else self.thinking + value
            touched = True
        for match in re.finditer(
            rf'<div id="{dom}-blocks" hx-swap-oob="(innerHTML|beforeend)">(.*?)</div>'
            rf'<span id="{dom}-tail"',
            text,
            re.S,
        ):
            self.blocks = (
                match.group(2) if match.group(1) == "innerHTML" else self.blocks + match.group(2)
            )
            touched = True
        for match in re.finditer(
            rf'<span id="{dom}-tail" hx-swap-oob="(innerHTML|beforeend)">([^<]*)</span>', text
        ):
            value = html.unescape(match.group(2))
            self.tail = value if match.group(1) == "innerHTML" else self.tail + value
            touched = True
        self.updates += touched
        return touched

    @property
    def text(self) -> str:
        return _strip_tags(self.blocks) + self.tail


def words(text: str) -> str:
    return " ".join(_strip_tags(text).split())


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def reply_of(conversation, status: str | None = None):
    """The conversation's latest assistant message (fresh from the database)."""
    from conversations.models import Message

    qs = Message.objects.filter(conversation=conversation, role="assistant").order_by("-created_at")
    if status:
        qs = qs.filter(status=status)
    return qs.first()


def finished_reply(conversation, timeout: float = 30.0):
    def done():
        message = reply_of(conversation)
        return message if message is not None and message.status != "streaming" else None

    return wait_for(done, timeout=timeout)


def new_id() -> str:
    return str(uuid.uuid4())


def off_the_loop(function, *args, **kwargs):
    """Run `function` in a thread of its own. After a browser test, Playwright's event loop
    runs in the test's thread for the rest of the session, and code that bridges to async
    (`async_to_sync`, as a view's broadcast does) refuses to run beside it."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    def run():
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()  # the thread's own connection would outlive the test DB

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def save_settings(client, conversation, **fields):
    """Post the settings form as the page does (HTMX), for the conversation's owner."""
    data = {"thinking": "off", "thinking_budget": 4096, "effort": "", "max_tokens": 1024}
    data.update(fields)

    def post():
        client.force_login(conversation.owner)
        return client.post(
            f"/chat/{conversation.pk}/settings/", data, headers={"HX-Request": "true"}
        )

    response = off_the_loop(post)
    assert "Saved" in response.content.decode(), response.content.decode()[:500]
    return response
