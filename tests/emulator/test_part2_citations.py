"""Unit tests of emulator/citations.py: sentence units, cited answers and document checks."""

from __future__ import annotations

import base64
import json

import pytest
from anthropic._models import BaseModel
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import TextBlock
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.citations import (
    DEFAULT_INTRO,
    citable_units,
    cited_answer,
    pdf_pages,
    sentences,
    validate_documents,
)
from emulator.model import text_block

GRASS = "The grass is green. The sky is blue.\nWater is wet! Is fire hot? Yes."


def strict_block(block: dict) -> TextBlock:
    parsed = TextBlock.model_validate_json(json.dumps(block), strict=True)
    _no_extras(parsed)
    return parsed


def _no_extras(value):
    if isinstance(value, BaseModel):
        assert not value.model_extra, f"{type(value).__name__} extras: {value.model_extra}"
        for name in type(value).model_fields:
            _no_extras(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            _no_extras(item)


def text_doc(data: str, title: str | None = "Doc", enabled: bool = True) -> dict:
    block = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": data},
    }
    if title is not None:
        block["title"] = title
    if enabled:
        block["citations"] = {"enabled": True}
    return block


def ask(question: str, *blocks: dict) -> dict:
    return {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [*blocks, {"type": "text", "text": question}]}],
    }


def cited(blocks: list[dict]) -> list[dict]:
    return [c for b in blocks for c in b.get("citations") or []]


# -- sentences -------------------------------------------------------------------------


def test_sentences_split_on_terminal_punctuation_and_line_breaks():
    spans = sentences(GRASS)
    assert [GRASS[a:b] for a, b in spans] == [
        "The grass is green. ",
        "The sky is blue.\n",
        "Water is wet! ",
        "Is fire hot? ",
        "Yes.",
    ]


def test_sentences_keep_decimals_and_skip_blank_text():
    assert [("Pi is 3.14 today. ok")[a:b] for a, b in sentences("Pi is 3.14 today. ok")] == [
        "Pi is 3.14 today. ",
        "ok",
    ]
    assert sentences("  \n\n ") == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab .!?\n\t\"')é"), max_size=80))
def test_sentence_spans_tile_the_text(text):
    spans = sentences(text)
    covered = "".join(text[a:b] for a, b in spans)
    # Only whitespace-only pieces are left out, so no visible character is lost.
    assert "".join(covered.split()) == "".join(text.split())
    for (a, b), (c, _d) in zip(spans, spans[1:], strict=False):
        assert a < b <= c
    assert all(text[a:b].strip() for a, b in spans)


# -- plain text documents --------------------------------------------------------------


def test_answer_cites_the_best_matching_sentence_with_char_location():
    blocks = cited_answer(
        "What colour is the sky?", ask("What colour is the sky?", text_doc(GRASS))
    )
    assert blocks[0] == {"type": "text", "text": DEFAULT_INTRO}
    (citation,) = cited(blocks)
    assert citation == {
        "type": "char_location",
        "cited_text": "The sky is blue.\n",
        "document_index": 0,
        "document_title": "Doc",
        "start_char_index": 20,
        "end_char_index": 37,
        "file_id": None,
    }
    assert GRASS[20:37] == citation["cited_text"]
    for block in blocks:
        strict_block(block)


def test_at_most_three_units_in_source_order():
    question = "grass sky water fire yes"
    blocks = cited_answer(question, ask(question, text_doc(GRASS)))
    citations = cited(blocks)
    assert len(citations) == 3
    starts = [c["start_char_index"] for c in citations]
    assert starts == sorted(starts)


def test_no_matching_word_cites_the_first_unit():
    (citation,) = cited(cited_answer("zzz", ask("zzz", text_doc(GRASS))))
    assert citation["cited_text"] == "The grass is green. "


def test_no_citable_source_gives_no_blocks():
    body = ask("sky?", text_doc(GRASS, enabled=False))
    assert cited_answer("sky?", body) == []
    assert cited_answer("sky?", {"messages": [{"role": "user", "content": "sky?"}]}) == []


def test_untitled_document_has_null_title():
    (citation,) = cited(cited_answer("sky", ask("sky", text_doc(GRASS, title=None))))
    assert citation["document_title"] is None


@st.composite
def documents(draw):
    words = st.text(alphabet=st.sampled_from("abcdefgh"), min_size=1, max_size=6)
    sentence = st.lists(words, min_size=1, max_size=6).map(" ".join)
    ends = st.sampled_from([". ", "! ", "? ", ".\n", "\n\n", " ", ".  "])
    parts = draw(st.lists(st.tuples(sentence, ends), min_size=1, max_size=8))
    lead = draw(st.sampled_from(["", " ", "\n"]))
    return lead + "".join(s + e for s, e in parts)


@settings(max_examples=150, deadline=None)
@given(st.lists(documents(), min_size=1, max_size=3), st.text(alphabet="abcdefgh ", max_size=30))
def test_cited_text_is_exactly_the_source_text_at_its_location(docs, question):
    body = ask(question, *(text_doc(d, title=f"d{i}") for i, d in enumerate(docs)))
    blocks = cited_answer(question, body)
    citations = cited(blocks)
    assert 1 <= len(citations) <= 3
    for citation in citations:
        data = docs[citation["document_index"]]
        assert (
            citation["cited_text"]
            == data[citation["start_char_index"] : citation["end_char_index"]]
        )
        assert citation["document_title"] == f"d{citation['document_index']}"
    for block in blocks:
        strict_block(block)


# -- custom content documents and search results ---------------------------------------


def content_doc(blocks: list, **extra) -> dict:
    return {
        "type": "document",
        "source": {"type": "content", "content": blocks},
        "citations": {"enabled": True},
        **extra,
    }


def test_content_documents_cite_whole_blocks():
    doc = content_doc(
        [
            {"type": "text", "text": "Alpha section about cats."},
            {"type": "text", "text": "Beta section about dogs."},
        ],
        title="Pets",
    )
    (citation,) = cited(cited_answer("dogs?", ask("dogs?", doc)))
    assert citation == {
        "type": "content_block_location",
        "cited_text": "Beta section about dogs.",
        "document_index": 0,
        "document_title": "Pets",
        "start_block_index": 1,
        "end_block_index": 2,
        "file_id": None,
    }


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="abc .\n", min_size=0, max_size=20), min_size=1, max_size=6))
def test_content_block_cited_text_equals_the_cited_block_range(texts):
    doc = content_doc([{"type": "text", "text": t} for t in texts])
    for citation in cited(cited_answer("abc", ask("abc", doc))):
        joined = "".join(texts[citation["start_block_index"] : citation["end_block_index"]])
        assert citation["cited_text"] == joined
        assert citation["end_block_index"] > citation["start_block_index"]


def search_result(source: str, texts: list[str], enabled: bool = True) -> dict:
    block = {
        "type": "search_result",
        "source": source,
        "title": f"Title of {source}",
        "content": [{"type": "text", "text": t} for t in texts],
    }
    if enabled:
        block["citations"] = {"enabled": True}
    return block


def test_search_results_are_counted_apart_from_documents_across_the_request():
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    text_doc("Unrelated text."),
                    search_result("https://a.example", ["nothing here"], enabled=False),
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            search_result("https://b.example", ["Penguins live in Antarctica."])
                        ],
                    },
                    text_doc("Owls hunt at night."),
                    {"type": "text", "text": "Where do penguins live?"},
                ],
            },
        ]
    }
    assert validate_documents(body) is None
    (citation,) = cited(cited_answer("Where do penguins live?", body))
    assert citation == {
        "type": "search_result_location",
        "cited_text": "Penguins live in Antarctica.",
        "search_result_index": 1,
        "source": "https://b.example",
        "title": "Title of https://b.example",
        "start_block_index": 0,
        "end_block_index": 1,
    }
    owl = cited(cited_answer("owls hunt", body))
    assert owl[0]["document_index"] == 1


# -- PDFs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pdf_b64() -> str:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.set_font("helvetica", size=12)
    for text in (
        "Chapter one is about apples. Apples are red.",
        "Chapter two is about bananas. Bananas are yellow.",
    ):
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    return base64.b64encode(bytes(pdf.output())).decode()


def test_pdf_pages_are_cited_with_page_location(pdf_b64):
    doc = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": pdf_b64},
        "title": "Fruit",
        "citations": {"enabled": True},
    }
    body = ask("What colour are bananas?", doc)
    assert validate_documents(body) is None
    citations = cited(cited_answer("What colour are bananas?", body))
    assert citations
    pages = pdf_pages(pdf_b64)
    for citation in citations:
        assert citation["type"] == "page_location"
        assert citation["start_page_number"] == 2
        assert citation["end_page_number"] == 3
        assert citation["cited_text"] in pages[1]
        assert "banana" in citation["cited_text"].lower()
        assert citation["file_id"] is None


def test_broken_pdf_gets_the_real_message():
    bad = base64.b64encode(b"%PDF-1.7 garbage").decode()
    doc = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": bad},
    }
    assert validate_documents(ask("q", doc)) == (
        "messages.0.content.0.pdf.source.base64.data: The PDF specified was not valid."
    )
    doc["source"]["data"] = base64.b64encode(b"<html>").decode()
    assert "The PDF specified was not valid." in validate_documents(ask("q", doc))
    doc["source"]["data"] = ""
    assert validate_documents(ask("q", doc)).endswith("PDF cannot be empty")


# -- validation ------------------------------------------------------------------------


def test_citations_must_be_on_for_all_or_none_of_the_documents():
    body = ask("q", text_doc("A."), text_doc("B.", enabled=False))
    assert "all or none of the documents" in validate_documents(body)
    assert validate_documents(ask("q", text_doc("A."), text_doc("B."))) is None
    assert (
        validate_documents(ask("q", text_doc("A.", enabled=False), text_doc("B.", enabled=False)))
        is None
    )


def test_document_in_an_assistant_turn_is_refused_under_2026_10_21_only():
    body = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [text_doc("A.")]},
        ]
    }
    assert validate_documents(body).startswith("messages.1.content.0: document blocks are not")
    assert validate_documents(body, api_version="2023-06-01") is None


def test_user_text_with_citations_is_refused_under_2026_10_21():
    block = {"type": "text", "text": "x", "citations": [{"type": "char_location"}]}
    body = {"messages": [{"role": "user", "content": [block]}]}
    assert validate_documents(body).startswith("messages.0.content.0.citations:")
    assert validate_documents(body, api_version="2023-06-01") is None


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"type": "document"}, "messages.0.content.0.source: Field required"),
        (
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/html", "data": "x"},
            },
            "messages.0.content.0.source.text.media_type: Input should be 'text/plain'",
        ),
        (
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "text/plain", "data": "x"},
            },
            "messages.0.content.0.source.base64.media_type: Input should be 'application/pdf'",
        ),
        (
            {"type": "document", "source": {"type": "nope"}},
            "messages.0.content.0.source: Input tag 'nope' found using 'type' does not match any "
            "of the expected tags: 'base64', 'content', 'file', 'text', 'url'",
        ),
        (
            {"type": "search_result", "source": "s", "content": []},
            "messages.0.content.0.title: Field required",
        ),
    ],
)
def test_bad_blocks_are_named(block, message):
    assert validate_documents(ask("q", block)) == message


def test_url_and_file_sources_validate_but_are_not_cited():
    doc = {
        "type": "document",
        "source": {"type": "url", "url": "https://x/y.pdf"},
        "citations": {"enabled": True},
    }
    body = ask("q", doc)
    assert validate_documents(body) is None
    assert citable_units(body) == []


# -- streaming -------------------------------------------------------------------------


def test_stream_deltas_rebuild_the_cited_blocks_through_the_sdk_accumulator():
    blocks = cited_answer("sky grass", ask("sky grass", text_doc(GRASS)))
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "m",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        }
    ]
    for index, block in enumerate(blocks):
        events.append(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "text", "text": ""},
            }
        )
        built = text_block(block["text"], block.get("citations"))
        assert built.final == block
        deltas = [d for d, _counted in built.deltas]
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    snapshot = None
    for event in events:
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs={})
    rebuilt = [b.to_dict(exclude_none=False) for b in snapshot.content]
    for got, want in zip(rebuilt, blocks, strict=True):
        assert got["text"] == want["text"]
        assert (got.get("citations") or []) == (want.get("citations") or [])
