"""Client tools with ``tool_choice`` auto: when the emulated model calls a tool, and what it says
once the results come back.

Rules (documented for the app's tests):

* A tool is called when the last user turn's text names it (its ``name``, or the name with
  underscores as spaces, case-insensitive, as whole words) or shares at least two content words
  with its name and description (one when the description has a single content word). The
  best-scoring tool wins; ties go to the earlier tool.
* Never when the last user turn carries ``tool_result`` blocks: then the reply answers from
  the results (``answer_after_tool_result``), calling an ``is_error`` result an error.
* ``EMULATOR-TOOL-LOOP`` anywhere in the conversation's user text makes it call a tool on
  every turn, forever (the matched tool, else the first), to test iteration caps.
* ``tool_choice`` ``none`` never calls. Forced choices (``any``/``tool``) are the model's own
  business (``emulator.model``), as are the blocks' stream deltas (one token per
  ``input_json_delta``).

Tool input comes from the injected ``instance_for(schema, text)`` (part 1's structured-output
generator), so it is valid for the tool's ``input_schema``.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Callable
from typing import Any

LOOP_TRIGGER = "EMULATOR-TOOL-LOOP"
_ALPHABET = string.ascii_letters + string.digits
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORD_TEXT = """
    a an the and or but if then else of to in on at by for with from into onto about as is
    are was were be been being do does did done have has had this that these those it its
    i me my we our you your he she they them their his her what which who whom whose when
    where why how can could should would will shall may might must not no yes so than too
    very just also any some all each every there here up down out over under again more most
    please tell give show find get set use using make let via per"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Generic verbs in tool names carry no meaning of their own ("get_weather" is about weather).
_GENERIC_NAME_TEXT = "get set list fetch run do make create update delete read write call tool"
_GENERIC_NAME_TEXT += " lookup"
_GENERIC_NAME_WORDS = frozenset(_GENERIC_NAME_TEXT.split())
QUOTE_LIMIT = 2000

InstanceFor = Callable[[dict, str], Any]


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    return {
        _stem(w)
        for w in _WORD.findall(text.lower())
        if w not in _STOPWORDS and (len(w) >= 3 or w.isdigit())
    }


def _blocks(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def text_of(content: Any) -> str:
    """The user's own words in a turn: its text blocks only (never documents, search results
    or tool results, which are material, not the user speaking)."""
    return "\n".join(
        b["text"]
        for b in _blocks(content)
        if b.get("type") == "text" and isinstance(b.get("text"), str)
    )


def custom_tools(body: dict) -> list[dict]:
    """Client tools (server tools like web_search have a versioned ``type`` and no schema)."""
    return [
        t
        for t in body.get("tools") or []
        if isinstance(t, dict)
        and t.get("type") in (None, "custom")
        and isinstance(t.get("name"), str)
        and isinstance(t.get("input_schema"), dict)
    ]


def _user_messages(body: dict) -> list[dict]:
    return [
        m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "user"
    ]


def last_user_has_tool_result(body: dict) -> bool:
    users = _user_messages(body)
    return bool(users) and any(
        b.get("type") == "tool_result" for b in _blocks(users[-1].get("content"))
    )


def loop_mode(body: dict) -> bool:
    return any(LOOP_TRIGGER in text_of(m.get("content")) for m in _user_messages(body))


def latest_user_text(body: dict) -> str:
    """The user's own words in the latest user turn that has any (a turn of only tool results
    is skipped, so after a tool round trip this is still the question)."""
    for message in reversed(_user_messages(body)):
        text = text_of(message.get("content"))
        if text.strip():
            return text
    return ""


def _names_tool(name: str, text: str) -> bool:
    lowered = text.lower()
    for form in {name.lower(), name.lower().replace("_", " ")}:
        if form and re.search(r"(?<![a-z0-9_])" + re.escape(form) + r"(?![a-z0-9_])", lowered):
            return True
    return False


def tool_score(tool: dict, text: str) -> int:
    """How strongly ``text`` asks for ``tool``: 1000 when it names it, else the number of
    shared content words once past the threshold, else 0."""
    name = tool["name"]
    if _names_tool(name, text):
        return 1000
    name_words = {w for w in content_words(name.replace("_", " ")) if w not in _GENERIC_NAME_WORDS}
    described = name_words | content_words(str(tool.get("description") or ""))
    if not described:
        return 0
    shared = len(described & content_words(text))
    return shared if shared >= min(2, len(described)) else 0


def best_tool(tools: list[dict], text: str) -> dict | None:
    best, best_score = None, 0
    for tool in tools:
        score = tool_score(tool, text)
        if score > best_score:
            best, best_score = tool, score
    return best


def tool_use_id(body: dict, name: str) -> str:
    """``toolu_01...``, the same for the same request (so replays match)."""
    seed = json.dumps(
        [body.get("model"), body.get("messages"), name], sort_keys=True, default=str
    ).encode()
    number = int.from_bytes(hashlib.sha256(seed).digest(), "big")
    chars = []
    for _ in range(22):
        number, rest = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[rest])
    return "toolu_01" + "".join(chars)


def plan_tool_call(body: dict, instance_for: InstanceFor) -> dict | None:
    """The ``tool_use`` block the model emits for this request, or None to answer in text.

    Call after validation and before generating text, for ``tool_choice`` auto (or none
    given); when it returns a block, the reply is (optionally a short text block, then) this
    block with ``stop_reason`` ``tool_use``.
    """
    tools = custom_tools(body)
    if not tools:
        return None
    choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
    if choice.get("type", "auto") != "auto":
        return None  # none: never; any / tool: forced, see emulator.model
    text = latest_user_text(body)
    tool: dict | None
    if loop_mode(body):
        tool = best_tool(tools, text) or tools[0]
    elif last_user_has_tool_result(body):
        return None
    else:
        users = _user_messages(body)
        tool = best_tool(tools, text_of(users[-1].get("content")) if users else "")
    if tool is None:
        return None
    return {
        "type": "tool_use",
        "id": tool_use_id(body, tool["name"]),
        "name": tool["name"],
        "input": instance_for(tool["input_schema"], text),
    }


def tool_preamble(call: dict) -> str:
    """A short text a model often says before a tool call (optional first block)."""
    return f"I'll use the {call['name']} tool for this."


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind == "image":
            parts.append("[image]")
        elif kind == "search_result":
            parts.append(text_of(block.get("content")))
        elif kind == "document":
            source = block.get("source") or {}
            data = source.get("data") if source.get("type") == "text" else None
            parts.append(
                data
                if isinstance(data, str)
                else f"[document {block.get('title') or ''}]".replace(" ]", "]")
            )
    return "\n".join(p for p in parts if p)


def _quote(text: str) -> str:
    text = text.strip()
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 1] + "…"


def answer_after_tool_result(body: dict) -> str:
    """The reply once the last user turn returns tool results: quotes each result, and says so
    plainly when a result is an error. Empty when the last user turn has no tool_result."""
    names: dict[str, str] = {}
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "assistant":
            for block in _blocks(message.get("content")):
                if block.get("type") == "tool_use":
                    names[str(block.get("id"))] = str(block.get("name"))
    users = _user_messages(body)
    if not users:
        return ""
    sentences = []
    for block in _blocks(users[-1].get("content")):
        if block.get("type") != "tool_result":
            continue
        name = names.get(str(block.get("tool_use_id")), "requested")
        text = _quote(_result_text(block.get("content")))
        if block.get("is_error"):
            detail = f': "{text}"' if text else ""
            sentences.append(
                f"The {name} tool reported an error{detail}. I could not get that result, "
                "so I cannot answer from it."
            )
        elif text:
            sentences.append(f'The {name} tool returned: "{text}".')
        else:
            sentences.append(f"The {name} tool returned no content.")
    return " ".join(sentences)
