"""Token-aware chunking on natural boundaries, with overlap and exact source positions.

The text is cut into units at the largest boundary that makes them fit the token budget:
paragraphs, then sentences, then lines, then words, and only as a last resort inside a word.
Units are packed greedily into chunks; each chunk after the first repeats the last units of the
one before, up to the overlap budget. A chunk is a span `[start, end)` of the document's text
that begins and ends on a non-space character, so `text[start:end]` is the chunk, always.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

from claudeapp.claude.tokens import estimate_tokens

TokenCounter = Callable[[str], int]

# Each pattern matches a separator; group 1, when present, is the part that is dropped.
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n\s*")
_SENTENCE = re.compile(r"[.!?…。！？][\"'”’)\]]*(\s+)")
_LINE = re.compile(r"\s*\n\s*")
_WORD = re.compile(r"\s+")
_LEVELS = (_PARAGRAPH, _SENTENCE, _LINE, _WORD)


@dataclass(frozen=True)
class ChunkSpan:
    start: int
    end: int
    token_count: int
    page_start: int | None = None
    page_end: int | None = None


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    pieces = []
    position = start
    for match in pattern.finditer(text, start, end):
        cut_start, cut_end = match.span(1) if pattern.groups else match.span()
        if cut_start > position:
            pieces.append(_trim(text, position, cut_start))
        position = max(position, cut_end)
    if position < end:
        pieces.append(_trim(text, position, end))
    return [(s, e) for s, e in pieces if e > s]


def _hard_split(
    text: str, start: int, end: int, tokens: int, max_tokens: int, count: TokenCounter
) -> list[tuple[int, int, int]]:
    """Cut a run without any boundary (a long URL, base64) into pieces that fit."""
    width = max(1, int((end - start) * max_tokens / max(tokens, 1) * 0.9))
    pieces = []
    position = start
    while position < end:
        piece_end = min(end, position + width)
        piece_tokens = count(text[position:piece_end])
        while piece_tokens > max_tokens and piece_end - position > 1:
            piece_end = position + max(1, (piece_end - position) // 2)
            piece_tokens = count(text[position:piece_end])
        pieces.append((position, piece_end, piece_tokens))
        position = piece_end
    return pieces


def _units(
    text: str,
    start: int,
    end: int,
    tokens: int,
    level: int,
    max_tokens: int,
    count: TokenCounter,
    out: list[tuple[int, int, int]],
) -> None:
    if tokens <= max_tokens:
        out.append((start, end, tokens))
        return
    while level < len(_LEVELS):
        pieces = _split(text, start, end, _LEVELS[level])
        level += 1
        if len(pieces) > 1:
            for piece_start, piece_end in pieces:
                piece_tokens = count(text[piece_start:piece_end])
                _units(text, piece_start, piece_end, piece_tokens, level, max_tokens, count, out)
            return
    out.extend(_hard_split(text, start, end, tokens, max_tokens, count))


def chunk_text(
    text: str,
    *,
    max_tokens: int,
    overlap_tokens: int,
    count_tokens: TokenCounter = estimate_tokens,
) -> list[ChunkSpan]:
    """Spans of `text`, each at most `max_tokens` (by `count_tokens`), consecutive ones sharing
    up to `overlap_tokens` of whole units. Blank text gives no chunks."""
    return chunk_and_count(
        text, max_tokens=max_tokens, overlap_tokens=overlap_tokens, count_tokens=count_tokens
    )[0]


def chunk_and_count(
    text: str,
    *,
    max_tokens: int,
    overlap_tokens: int,
    count_tokens: TokenCounter = estimate_tokens,
) -> tuple[list[ChunkSpan], int]:
    """`chunk_text`, plus the token count of the whole text.

    Each paragraph is counted once and the counts are added up, for the text and for each
    chunk: exact for a counter that gives whitespace no tokens (the door's estimate), and an
    upper bound where a run without boundaries had to be cut. Counting is most of the cost of
    chunking, so nothing is counted twice unless it must be split."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    overlap_tokens = max(0, min(overlap_tokens, max_tokens // 2))
    start, end = _trim(text, 0, len(text))
    if start == end:
        return [], 0
    units: list[tuple[int, int, int]] = []
    total_tokens = 0
    for paragraph_start, paragraph_end in _split(text, start, end, _PARAGRAPH):
        tokens = count_tokens(text[paragraph_start:paragraph_end])
        total_tokens += tokens
        _units(text, paragraph_start, paragraph_end, tokens, 1, max_tokens, count_tokens, units)

    chunks: list[ChunkSpan] = []
    first = 0
    while first < len(units):
        last = first
        total = units[first][2]
        while last + 1 < len(units) and total + units[last + 1][2] <= max_tokens:
            last += 1
            total += units[last][2]
        chunks.append(ChunkSpan(units[first][0], units[last][1], total))
        if last + 1 >= len(units):
            break
        following = units[last + 1][2]
        next_first = last + 1
        overlap = 0
        while next_first - 1 > first:
            candidate = units[next_first - 1][2]
            if overlap + candidate > overlap_tokens or overlap + candidate + following > max_tokens:
                break
            next_first -= 1
            overlap += candidate
        first = next_first
    return chunks, total_tokens


def with_pages(chunks: list[ChunkSpan], pages: list[list[int]] | None) -> list[ChunkSpan]:
    """Attach 1-based page numbers from page spans `[[start, end], ...]` (PDFs)."""
    if not pages:
        return chunks
    starts = [page[0] for page in pages]

    def page_of(offset: int) -> int:
        return max(1, bisect.bisect_right(starts, offset))

    return [
        ChunkSpan(c.start, c.end, c.token_count, page_of(c.start), page_of(c.end - 1))
        for c in chunks
    ]
