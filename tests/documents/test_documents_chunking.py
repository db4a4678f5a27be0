"""Chunks are exact spans of the text, fit the token budget, cut at natural boundaries, overlap,
and cover every character that is not blank space."""

from __future__ import annotations

import re
from pydoc_data.topics import topics

from hypothesis import given, settings
from hypothesis import strategies as st

from claudeapp.claude.tokens import estimate_tokens
from documents.chunking import chunk_and_count, chunk_text, with_pages

ALPHABET = st.sampled_from(
    list("abcdefghij KLMNOP 0123456789 .,;:!?'\"()-\n\n\n\t\r ")
    + ["é", "ß", "日本", "語", "\u00a0", "\u2029", "🙂", "…", "。", "\x0c"]
)
TEXTS = st.lists(ALPHABET, max_size=600).map("".join) | st.text(max_size=400)


def assert_well_formed(text: str, chunks, max_tokens: int) -> None:
    covered = [False] * len(text)
    previous = None
    for chunk in chunks:
        piece = text[chunk.start : chunk.end]
        assert piece, "no empty chunks"
        assert not piece[0].isspace() and not piece[-1].isspace()
        assert estimate_tokens(piece) <= max_tokens
        assert chunk.token_count <= max_tokens
        if previous is not None:
            assert chunk.start > previous.start and chunk.end > previous.end
        for i in range(chunk.start, chunk.end):
            covered[i] = True
        previous = chunk
    missed = [c for c, hit in zip(text, covered, strict=True) if not hit and not c.isspace()]
    assert not missed, f"characters outside every chunk: {missed[:10]}"


# A budget of at least 2: one CJK character alone counts 2 and cannot be cut smaller.
@settings(max_examples=300, deadline=None)
@given(text=TEXTS, max_tokens=st.integers(2, 60), overlap=st.integers(0, 30))
def test_chunks_are_exact_bounded_spans_covering_the_text(text, max_tokens, overlap):
    chunks = chunk_text(text, max_tokens=max_tokens, overlap_tokens=overlap)
    assert_well_formed(text, chunks, max_tokens)


@settings(max_examples=30, deadline=None)
@given(
    names=st.lists(st.sampled_from(sorted(topics)), min_size=1, max_size=4),
    max_tokens=st.integers(40, 500),
    overlap=st.integers(0, 100),
)
def test_real_reference_texts_chunk_exactly(names, max_tokens, overlap):
    text = "\n\n".join(topics[name] for name in names)
    chunks, total = chunk_and_count(text, max_tokens=max_tokens, overlap_tokens=overlap)
    assert_well_formed(text, chunks, max_tokens)
    assert total == estimate_tokens(text)


def test_blank_text_has_no_chunks():
    assert chunk_text(" \n\n\t ", max_tokens=10, overlap_tokens=2) == []


def test_a_short_text_is_one_chunk_without_its_surrounding_blanks():
    text = "\n\n  The if statement.  \n"
    [chunk] = chunk_text(text, max_tokens=100, overlap_tokens=10)
    assert text[chunk.start : chunk.end] == "The if statement."


def test_chunks_end_on_paragraph_boundaries_when_paragraphs_fit():
    names = ["if", "while", "for", "try", "with", "assert", "pass", "del"]
    # Paragraphs of about 200 tokens, so that whole ones fit a 400-token chunk.
    text = "\n\n".join(topics[name].replace("\n\n", "\n")[:800].strip() for name in names)
    chunks = chunk_text(text, max_tokens=400, overlap_tokens=0)
    assert len(chunks) >= 2
    for chunk in chunks[:-1]:
        assert text[chunk.end : chunk.end + 2] == "\n\n", "a chunk ends where a paragraph ends"


def test_long_paragraphs_are_cut_between_sentences():
    sentences = [
        f"Sentence number {i} says something about loops and else clauses." for i in range(80)
    ]
    text = " ".join(sentences)
    chunks = chunk_text(text, max_tokens=50, overlap_tokens=0)
    assert len(chunks) > 5
    for chunk in chunks:
        assert text[chunk.start : chunk.end].endswith("clauses.")


def test_consecutive_chunks_overlap_by_whole_sentences():
    text = " ".join(f"Fact {i} is about the data model." for i in range(60))
    chunks = chunk_text(text, max_tokens=60, overlap_tokens=20)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end, "overlap"
        shared = text[after.start : before.end]
        assert shared.startswith("Fact") and shared.endswith(".")
        assert estimate_tokens(shared) <= 20


def test_a_run_without_any_boundary_is_still_cut_to_fit():
    text = "x" * 5000 + "." * 300
    chunks = chunk_text(text, max_tokens=40, overlap_tokens=5)
    assert_well_formed(text, chunks, 40)


def test_pages_are_attached_from_page_spans():
    pages_text = [topics["if"], topics["while"], topics["for"]]
    text, spans, position = "", [], 0
    for i, page in enumerate(pages_text):
        if i:
            text += "\n\n"
            position += 2
        spans.append([position, position + len(page)])
        text += page
        position += len(page)
    chunks = with_pages(chunk_text(text, max_tokens=120, overlap_tokens=20), spans)
    for chunk in chunks:
        for page_number in range(chunk.page_start, chunk.page_end + 1):
            start, end = spans[page_number - 1]
            assert start < chunk.end and chunk.start < end + 2
        first_words = re.findall(r"\w+", text[chunk.start : chunk.end])[:3]
        start, end = spans[chunk.page_start - 1]
        assert " ".join(first_words) in " ".join(re.findall(r"\w+", text[start:end]))
    assert chunks[-1].page_end == 3
