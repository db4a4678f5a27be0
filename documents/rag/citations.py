"""From the API's citations to passages of our documents.

`char_location` (a whole document sent as text) gives character offsets into `Document.text`
directly. `search_result_location` (a retrieved chunk) names the chunk; the cited text is found
inside it to narrow the passage, else the whole chunk is the passage. `page_location` (a PDF)
maps to the page's span of the extracted text. Each distinct passage gets one number, in order
of first citation.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any


def _pages_of(pages: list[list[int]] | None, start: int, end: int) -> tuple[int | None, int | None]:
    if not pages:
        return None, None
    starts = [p[0] for p in pages]
    first = max(1, bisect.bisect_right(starts, start))
    last = max(first, bisect.bisect_right(starts, max(start, end - 1)))
    return first, last


def _find(haystack: str, needle: str) -> tuple[int, int]:
    """(index, length) of `needle` in `haystack`, or of it without surrounding whitespace;
    (-1, 0) if absent."""
    for candidate in (needle, needle.strip()):
        if candidate:
            at = haystack.find(candidate)
            if at >= 0:
                return at, len(candidate)
    return -1, 0


def locate(citation: dict[str, Any], sources: list[dict]) -> dict[str, Any] | None:
    """The passage a citation points at: {"document", "title", "start", "end", "page_start",
    "page_end", "cited_text"}; None when it names nothing we sent."""
    kind = citation.get("type")
    cited = str(citation.get("cited_text") or "")
    if kind in ("char_location", "page_location", "content_block_location"):
        index = citation.get("document_index")
    elif kind == "search_result_location":
        index = citation.get("search_result_index")
    else:
        return None
    if not isinstance(index, int) or not 0 <= index < len(sources):
        return None
    source = sources[index]
    pages = source.get("pages")
    base, limit = int(source["start"]), int(source["end"])
    if kind == "char_location":
        start = base + int(citation.get("start_char_index") or 0)
        end = base + int(citation.get("end_char_index") or 0)
    elif kind == "page_location" and pages:
        first = int(citation.get("start_page_number") or 1)
        last = int(citation.get("end_page_number") or first + 1) - 1
        first = min(max(first, 1), len(pages))
        last = min(max(last, first), len(pages))
        start, end = pages[first - 1][0], pages[last - 1][1]
    else:  # a retrieved chunk: narrow to the cited text when it is in there
        start, end = base, limit
    start, end = max(base, min(start, limit)), max(base, min(end, limit))
    if end <= start:
        start, end = base, limit
    page_start, page_end = _pages_of(pages, start, end)
    return {
        "document": source["document"],
        "title": source.get("title", ""),
        "start": start,
        "end": end,
        "page_start": page_start,
        "page_end": page_end,
        "cited_text": cited,
        "chunk": source.get("chunk"),
    }


def narrow(passage: dict[str, Any], document_text: str) -> dict[str, Any]:
    """For a chunk-wide passage, the exact span of its cited text inside the chunk."""
    if passage.get("chunk") is None:
        return passage
    start, end = passage["start"], passage["end"]
    at, length = _find(document_text[start:end], passage["cited_text"])
    if at < 0:
        return passage
    return {**passage, "start": start + at, "end": start + at + length}


def _located(blocks: list[dict], sources: list[dict]) -> Iterator[list[dict]]:
    """Per content block, the passages its citations point at (those naming what we sent)."""
    for block in blocks:
        citations = block.get("citations") or () if block.get("type") == "text" else ()
        yield [p for p in (locate(c, sources) for c in citations) if p is not None]


def number_citations(
    blocks: list[dict], sources: list[dict], texts: dict[int, str]
) -> tuple[list[dict], list[list[int]]]:
    """The numbered passages of an answer and, per content block, the numbers it cites.

    `texts` maps document id -> its text (for narrowing retrieved passages)."""
    passages: list[dict] = []
    numbers: dict[tuple[int, int, int], int] = {}
    per_block: list[list[int]] = []
    for located in _located(blocks, sources):
        cited: list[int] = []
        for passage in located:
            text = texts.get(passage["document"])
            if text is not None:
                passage = narrow(passage, text)
            key = (passage["document"], passage["start"], passage["end"])
            if key not in numbers:
                numbers[key] = len(passages) + 1
                passages.append({"n": numbers[key], **passage})
            if numbers[key] not in cited:
                cited.append(numbers[key])
        per_block.append(cited)
    return passages, per_block


def stored_numbers(
    blocks: list[dict], sources: list[dict], passages: list[dict]
) -> list[list[int]]:
    """Per content block, the numbers of the stored `passages` its citations point at: the
    markers of an answer rendered again later (no document text needed; a retrieved chunk's
    citation finds the narrowed passage inside the chunk by its cited text)."""
    per_block: list[list[int]] = []
    for located in _located(blocks, sources):
        cited: list[int] = []
        for found in located:
            inside = [
                p for p in passages
                if p["document"] == found["document"]
                and found["start"] <= p["start"] and p["end"] <= found["end"]
            ]  # fmt: skip
            exact = [p for p in inside if (p["start"], p["end"]) == (found["start"], found["end"])]
            same_text = [p for p in inside if p.get("cited_text") == found["cited_text"]]
            match = (exact or same_text or inside or [None])[0]
            if match is not None and match["n"] not in cited:
                cited.append(match["n"])
        per_block.append(cited)
    return per_block
