"""Documents, search results and citations (reference section H).

Citable sources are ``document`` blocks (plain text, base64 PDF, custom ``content``) and
``search_result`` blocks with ``citations: {"enabled": true}``, anywhere in the messages
(including inside ``tool_result`` content). Each is cut into the units the real API cites:

* plain text -> sentences -> ``char_location`` (0-based characters, end exclusive)
* PDF -> per-page text (pypdf) -> sentences -> ``page_location`` (1-based pages, end exclusive)
* custom content -> its text blocks, not re-chunked -> ``content_block_location``
* search result -> its text blocks -> ``search_result_location``

``cited_answer`` picks the 1-3 units that share the most words with the question and returns
the reply's text blocks, each cited unit as its own block with one citation whose
``cited_text`` is exactly the source text at the reported location. Streaming them
(``citations_delta`` first, then the text) is ``emulator.model.text_block``'s job.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MAX_PDF_PAGES = 100
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORD_TEXT = """
    a an the and or but if of to in on at by for with from into as is are was were be been
    being do does did have has had this that these those it its i me my we our you your he she
    they them their what which who whom when where why how can could should would will may
    might must not no so than too very just also any some all each there here about please
    tell say says said document documents source sources text"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
DEFAULT_INTRO = "According to the provided sources: "


# -- sentences -------------------------------------------------------------------------

# A sentence ends after . ! ? (plus closing quotes/brackets) followed by whitespace, or at a
# line break. The whitespace after it belongs to it, so the spans tile the whole text and a
# span's text is exactly ``text[start:end]``.
_BOUNDARY = re.compile(r"(?:[.!?]+[\"')\]’”]*\s+|\n\s*)")


def sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` spans (end exclusive) of the sentences of ``text``.

    The spans cover the text without gaps; spans that hold only whitespace are left out
    (nothing to cite). Leading whitespace goes with the first sentence.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        if end > start:
            spans.append((start, end))
            start = end
    if start < len(text):
        spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def words(text: str) -> set[str]:
    return {
        _stem(w)
        for w in _WORD.findall(text.lower())
        if w not in _STOPWORDS and (len(w) >= 3 or w.isdigit())
    }


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


# -- PDFs ------------------------------------------------------------------------------


class PdfError(ValueError):
    pass


@functools.lru_cache(maxsize=16)
def _pdf_pages_cached(digest: str, data: bytes) -> tuple[str, ...]:
    # Keyed by digest as well so two equal PDFs in one request parse once.
    from pypdf import PdfReader  # imported lazily: only PDF requests pay for it

    try:
        reader = PdfReader(io.BytesIO(data))
        return tuple((page.extract_text() or "") for page in reader.pages)
    except Exception as exc:  # pypdf raises many types for broken files
        raise PdfError(str(exc)) from exc


def pdf_pages(b64: str) -> list[str]:
    """Per-page text of a base64 PDF; raises ``PdfError`` when it is not a readable PDF."""
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PdfError("invalid base64") from exc
    if not data.startswith(b"%PDF-"):
        raise PdfError("not a PDF")
    return list(_pdf_pages_cached(hashlib.sha256(data).hexdigest(), data))


# -- sources ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One citable unit: the exact text and the citation fields that locate it."""

    cited_text: str
    location: dict[str, Any]  # type + index fields, without cited_text
    order: int  # position in the request, for stable ordering


def _blocks(content: Any) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _citations_on(block: dict) -> bool:
    config = block.get("citations")
    return isinstance(config, dict) and config.get("enabled") is True


def iter_source_blocks(body: dict) -> Iterator[tuple[str, dict, str | None]]:
    """Yield ``(path, block, role)`` for every document and search_result block in request
    order (each message's blocks, a tool_result's inner blocks in place), which is how the API
    numbers ``document_index`` and ``search_result_index``."""
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict):
            continue
        for j, block in enumerate(_blocks(message.get("content"))):
            if block.get("type") in ("document", "search_result"):
                yield f"messages.{i}.content.{j}", block, message.get("role")
            elif block.get("type") == "tool_result":
                for k, inner in enumerate(_blocks(block.get("content"))):
                    if inner.get("type") in ("document", "search_result"):
                        yield f"messages.{i}.content.{j}.content.{k}", inner, message.get("role")


def citable_units(body: dict) -> list[Unit]:
    """Every citable unit of the request's citation-enabled sources."""
    units: list[Unit] = []
    document_index = search_index = -1
    for _path, block, _role in iter_source_blocks(body):
        if block["type"] == "document":
            document_index += 1
            if _citations_on(block):
                units.extend(_document_units(block, document_index, len(units)))
        else:
            search_index += 1
            if _citations_on(block):
                units.extend(_search_result_units(block, search_index, len(units)))
    return units


def _document_units(block: dict, index: int, order: int) -> list[Unit]:
    source = block.get("source") or {}
    title = block.get("title") if isinstance(block.get("title"), str) else None
    base = {"document_index": index, "document_title": title}
    units: list[Unit] = []
    kind = source.get("type")
    if kind == "text" and isinstance(source.get("data"), str):
        data = source["data"]
        for start, end in sentences(data):
            location = {
                "type": "char_location",
                **base,
                "start_char_index": start,
                "end_char_index": end,
                "file_id": None,
            }
            units.append(Unit(data[start:end], location, order + len(units)))
    elif kind == "base64":
        try:
            pages = pdf_pages(str(source.get("data") or ""))
        except PdfError:
            return []  # validate_documents reports it
        for number, page_text in enumerate(pages, start=1):
            for start, end in sentences(page_text):
                location = {
                    "type": "page_location",
                    **base,
                    "start_page_number": number,
                    "end_page_number": number + 1,
                    "file_id": None,
                }
                units.append(Unit(page_text[start:end], location, order + len(units)))
    elif kind == "content":
        for j, inner in enumerate(_blocks(source.get("content"))):
            text = inner.get("text")
            if inner.get("type") == "text" and isinstance(text, str) and text.strip():
                location = {
                    "type": "content_block_location",
                    **base,
                    "start_block_index": j,
                    "end_block_index": j + 1,
                    "file_id": None,
                }
                units.append(Unit(text, location, order + len(units)))
    # url and file sources: the emulator cannot fetch them, so they are not cited.
    return units


def _search_result_units(block: dict, index: int, order: int) -> list[Unit]:
    units: list[Unit] = []
    for j, inner in enumerate(_blocks(block.get("content"))):
        text = inner.get("text")
        if inner.get("type") == "text" and isinstance(text, str) and text.strip():
            location = {
                "type": "search_result_location",
                "search_result_index": index,
                "source": str(block.get("source", "")),
                "title": block.get("title") if isinstance(block.get("title"), str) else None,
                "start_block_index": j,
                "end_block_index": j + 1,
            }
            units.append(Unit(text, location, order + len(units)))
    return units


def citation(unit: Unit) -> dict:
    """The citation object exactly as the SDK types it."""
    return {**unit.location, "cited_text": unit.cited_text}


def best_units(question: str, units: list[Unit], limit: int = 3) -> list[Unit]:
    """The up-to-``limit`` units sharing the most words with the question (ties: earlier
    first), in request order; the first unit when nothing matches."""
    if not units:
        return []
    wanted = words(question)
    scored = [(len(wanted & words(u.cited_text)), u) for u in units]
    hits = [(s, u) for s, u in scored if s > 0]
    if not hits:
        return [units[0]]
    hits.sort(key=lambda pair: (-pair[0], pair[1].order))
    return sorted((u for _, u in hits[:limit]), key=lambda u: u.order)


def cited_answer(
    question: str, body: dict, intro: str = DEFAULT_INTRO, limit: int = 3
) -> list[dict]:
    """The reply's content blocks: an uncited intro, then one block per chosen unit carrying
    its citation. Empty when the request has no citation-enabled source (the caller answers
    normally then)."""
    chosen = best_units(question, citable_units(body), limit)
    if not chosen:
        return []
    blocks: list[dict] = [{"type": "text", "text": intro}] if intro else []
    for n, unit in enumerate(chosen):
        text = " ".join(unit.cited_text.split())
        if n < len(chosen) - 1:
            text += " "
        blocks.append({"type": "text", "text": text, "citations": [citation(unit)]})
    return blocks


def last_turn_has_citable_results(body: dict) -> bool:
    """Whether the last message's tool results carry citation-enabled sources (search
    results or documents returned by a tool): then the answer cites them."""
    messages = body.get("messages") or []
    prefix = f"messages.{len(messages) - 1}."
    return any(
        path.startswith(prefix) and path.count(".content.") == 2 and _citations_on(block)
        for path, block, _role in iter_source_blocks(body)
    )


# -- validation ------------------------------------------------------------------------


def validate_documents(body: dict, api_version: str = "2026-10-21") -> str | None:
    """The 400 message for bad document / search_result blocks, or None.

    Checks: source shapes; a base64 source must be a readable PDF of at most 100 pages (the
    real messages: ``...pdf.source.base64.data: The PDF specified was not valid.``, ``PDF
    cannot be empty``, ``A maximum of 100 PDF pages may be provided.``); citations on all or
    none of the documents; and, under 2026-10-21, no document in an assistant turn and no
    non-empty ``citations`` on a user text block.
    """
    enabled: set[bool] = set()
    for path, block, role in iter_source_blocks(body):
        if block["type"] == "search_result":
            error = _check_search_result(path, block)
            if error:
                return error
            continue
        if role == "assistant" and api_version >= "2026-10-21":
            return (
                f"{path}: document blocks are not allowed in assistant messages with "
                f"anthropic-version {api_version}"
            )
        error = _check_document(path, block)
        if error:
            return error
        enabled.add(_citations_on(block))
    if len(enabled) > 1:
        return (
            "Citations must be enabled on all or none of the documents in a request: "
            "found documents with and without `citations.enabled`."
        )
    if api_version >= "2026-10-21":
        for path, block in _user_text_blocks(body):
            if block.get("citations"):
                return (
                    f"{path}.citations: citations are not allowed in user messages with "
                    f"anthropic-version {api_version}"
                )
    return None


def _user_text_blocks(body: dict) -> Iterator[tuple[str, dict]]:
    """Text blocks of user turns: direct ones and those inside search results (also within a
    tool_result), which is where 2026-10-21 refuses non-empty ``citations``."""
    for i, message in enumerate(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        for j, block in enumerate(_blocks(message.get("content"))):
            path = f"messages.{i}.content.{j}"
            holders = [(path, block)]
            if block.get("type") == "tool_result":
                holders = [
                    (f"{path}.content.{k}", inner)
                    for k, inner in enumerate(_blocks(block.get("content")))
                ]
            for where, holder in holders:
                if holder.get("type") == "text":
                    yield where, holder
                elif holder.get("type") == "search_result":
                    for k, inner in enumerate(_blocks(holder.get("content"))):
                        if inner.get("type") == "text":
                            yield f"{where}.content.{k}", inner


_SOURCE_TAGS = ("base64", "content", "file", "text", "url")


def _check_document(path: str, block: dict) -> str | None:
    source = block.get("source")
    if not isinstance(source, dict):
        return f"{path}.source: Field required"
    kind = source.get("type")
    if kind not in _SOURCE_TAGS:
        expected = ", ".join(f"'{t}'" for t in _SOURCE_TAGS)
        return (
            f"{path}.source: Input tag '{kind}' found using 'type' does not match any of the "
            f"expected tags: {expected}"
        )
    config = block.get("citations")
    if config is not None and not (
        isinstance(config, dict) and isinstance(config.get("enabled", False), bool)
    ):
        return f"{path}.citations.enabled: Input should be a valid boolean"
    if kind == "base64":
        # The real API names PDF problems under ``pdf`` rather than ``document``.
        where = f"{path}.pdf.source.base64"
        if source.get("media_type") != "application/pdf":
            return f"{path}.source.base64.media_type: Input should be 'application/pdf'"
        data = source.get("data")
        if not isinstance(data, str):
            return f"{path}.source.base64.data: Input should be a valid string"
        if not data:
            return f"{where}.data: PDF cannot be empty"
        try:
            pages = pdf_pages(data)
        except PdfError:
            return f"{where}.data: The PDF specified was not valid."
        if len(pages) > MAX_PDF_PAGES:
            return f"A maximum of {MAX_PDF_PAGES} PDF pages may be provided."
    elif kind == "text":
        if source.get("media_type") != "text/plain":
            return f"{path}.source.text.media_type: Input should be 'text/plain'"
        if not isinstance(source.get("data"), str):
            return f"{path}.source.text.data: Input should be a valid string"
    elif kind == "content":
        content = source.get("content")
        if isinstance(content, str):
            return None
        if not isinstance(content, list):
            return f"{path}.source.content.content: Input should be a valid list"
        for k, inner in enumerate(content):
            if not isinstance(inner, dict) or inner.get("type") not in ("text", "image"):
                return (
                    f"{path}.source.content.content.{k}: Input tag '"
                    f"{inner.get('type') if isinstance(inner, dict) else inner}' found using "
                    "'type' does not match any of the expected tags: 'image', 'text'"
                )
            if inner["type"] == "text" and not isinstance(inner.get("text"), str):
                return f"{path}.source.content.content.{k}.text: Field required"
    elif kind == "url" and not isinstance(source.get("url"), str):
        return f"{path}.source.url.url: Field required"
    elif kind == "file" and not isinstance(source.get("file_id"), str):
        return f"{path}.source.file.file_id: Field required"
    return None


def _check_search_result(path: str, block: dict) -> str | None:
    for key in ("source", "title"):
        if not isinstance(block.get(key), str):
            return f"{path}.{key}: Field required"
    content = block.get("content")
    if not isinstance(content, list):
        return f"{path}.content: Input should be a valid list"
    for k, inner in enumerate(content):
        if not isinstance(inner, dict) or inner.get("type") != "text":
            return f"{path}.content.{k}.type: Input should be 'text'"
        if not isinstance(inner.get("text"), str):
            return f"{path}.content.{k}.text: Field required"
    return None
