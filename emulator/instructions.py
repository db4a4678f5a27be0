"""The obey trigger: instructions count only where the real model would take them.

A line ``EMULATOR-OBEY: <reply text>`` in a system text block or in the user's own text makes
the reply exactly ``<reply text>``. The same line inside a ``document``, a ``search_result`` or
a ``tool_result`` is material the user handed over, not an instruction, so it is never obeyed.
That lets the app's tests prove documents are never spliced into instructions: if the app
pasted a document's text into the user turn or system prompt, the trigger would fire.

Scope: the last user message's text blocks win (the latest instruction); otherwise the system
prompt (top-level ``system`` and mid-conversation ``role: system`` messages). A trigger in an
earlier user turn applies to that turn only. The last trigger line found in a scope wins.
"""

from __future__ import annotations

import re
from typing import Any

OBEY_TRIGGER = "EMULATOR-OBEY:"
_LINE = re.compile(r"^[ \t]*EMULATOR-OBEY:[ \t]?(.*?)[ \t\r]*$", re.MULTILINE)


def _text_blocks(content: Any) -> list[str]:
    """Only top-level ``text`` blocks: nested documents, search results and tool results are
    skipped because they are content, not the speaker's words."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [
        b["text"]
        for b in content
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]


def _last_trigger(texts: list[str]) -> str | None:
    found = None
    for text in texts:
        if OBEY_TRIGGER not in text:  # a plain substring test first: texts can be long
            continue
        for match in _LINE.finditer(text):
            found = match.group(1)
    return found


def find_obey(body: dict) -> str | None:
    """The reply the trigger asks for, or None. Check it after validation and before any
    other reply logic (tools, citations, structured output) so it wins."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    if users:
        reply = _last_trigger(_text_blocks(users[-1].get("content")))
        if reply is not None:
            return reply
    system_texts = _text_blocks(body.get("system"))
    for message in messages:
        if message.get("role") == "system":
            system_texts.extend(_text_blocks(message.get("content")))
    return _last_trigger(system_texts)
