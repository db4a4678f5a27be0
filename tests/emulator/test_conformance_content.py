"""Documents and citations, search results, images and the obey trigger over HTTP with the
official SDK in strict mode (reference sections H and I)."""

from __future__ import annotations

import base64
import io

import anthropic
import pytest
from fpdf import FPDF
from PIL import Image
from pypdf import PdfReader

from tests.emulator.support import blocks_of, text_of

MODEL = "claude-haiku-5-5"  # no thinking by default
TIDES = (
    "The moon pulls the oceans toward it. The sun adds a smaller pull of its own. "
    "Spring tides happen when the sun and moon line up. Neap tides happen at the quarter moons."
)
QUESTION = "Why do spring tides happen?"
ON = {"enabled": True}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def text_doc(data: str = TIDES, **kw) -> dict:
    source = {"type": "text", "media_type": "text/plain", "data": data}
    return {"type": "document", "source": source, "title": "Tides", "citations": ON, **kw}


def ask(*blocks: dict, question: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [*blocks, {"type": "text", "text": question}]}]


def create(sdk, messages, **kw):
    return sdk.messages.create(model=MODEL, max_tokens=1000, messages=messages, **kw)


def citations_of(message) -> list:
    return [c for b in message.content if b.type == "text" for c in b.citations or []]


# --- citations ----------------------------------------------------------------------------------


def test_plain_text_document_gives_char_locations_with_the_exact_text(sdk):
    reply = create(sdk, ask(text_doc()))
    cites = citations_of(reply)
    assert cites and all(c.type == "char_location" for c in cites)
    for c in cites:
        assert c.cited_text == TIDES[c.start_char_index : c.end_char_index]
        assert (c.document_index, c.document_title) == (0, "Tides")
    assert any("Spring tides" in c.cited_text for c in cites)
    # The answer's text is built from the cited sentences.
    assert "Spring tides happen when the sun and moon line up." in text_of(reply)


def test_citations_stream_as_citations_deltas(sdk):
    messages = ask(text_doc())
    plain = create(sdk, messages)
    deltas = []
    with sdk.messages.stream(model=MODEL, max_tokens=1000, messages=messages) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "citations_delta":
                deltas.append(event.delta.citation)
        final = stream.get_final_message()
    assert [d.to_dict() for d in deltas] == [c.to_dict() for c in citations_of(plain)]
    assert [b.to_dict() for b in final.content] == [b.to_dict() for b in plain.content]


def pdf(pages: list[str]) -> bytes:
    doc = FPDF()
    doc.set_font("helvetica", size=12)
    for text in pages:
        doc.add_page()
        doc.multi_cell(0, 8, text)
    return bytes(doc.output())


def test_a_real_pdf_gives_page_locations_with_the_pages_text(sdk):
    pages = [
        "Harbour rules. Boats must moor at the north quay. Fuel is sold at dawn.",
        "Tide tables. Spring tides happen when the sun and moon line up. Keep clear then.",
    ]
    data = pdf(pages)
    extracted = [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]
    doc = {
        "type": "document",
        "title": "Harbour",
        "citations": ON,
        "source": {"type": "base64", "media_type": "application/pdf", "data": b64(data)},
    }
    reply = create(sdk, ask(doc))
    cites = citations_of(reply)
    assert cites and all(c.type == "page_location" for c in cites)
    for c in cites:
        assert c.end_page_number == c.start_page_number + 1
        assert c.cited_text.strip() in extracted[c.start_page_number - 1]
    assert any(c.start_page_number == 2 and "Spring tides" in c.cited_text for c in cites)
    # Tokens: the same deterministic counter for create and count_tokens.
    counted = sdk.messages.count_tokens(model=MODEL, messages=ask(doc)).input_tokens
    assert reply.usage.input_tokens == counted


def test_custom_content_gives_content_block_locations(sdk):
    content = [
        {"type": "text", "text": "Lighthouses warn ships of rocks."},
        {"type": "text", "text": "Spring tides happen near full and new moon."},
    ]
    doc = {"type": "document", "title": "Notes", "citations": ON,
           "source": {"type": "content", "content": content}}  # fmt: skip
    cites = citations_of(create(sdk, ask(doc)))
    assert cites and all(c.type == "content_block_location" for c in cites)
    for c in cites:
        assert c.end_block_index == c.start_block_index + 1
        assert c.cited_text == content[c.start_block_index]["text"]


def search_result(texts: list[str], **kw) -> dict:
    return {
        "type": "search_result",
        "source": "https://example.com/tides",
        "title": "Tides 101",
        "content": [{"type": "text", "text": t} for t in texts],
        "citations": ON,
        **kw,
    }


def test_search_results_give_search_result_locations(sdk):
    texts = ["Tides rise twice a day.", "Spring tides happen when the sun and moon line up."]
    other = search_result(["Unrelated text about harbours."], source="https://example.com/h")
    cites = citations_of(create(sdk, ask(other, search_result(texts))))
    assert cites and all(c.type == "search_result_location" for c in cites)
    spring = next(c for c in cites if "Spring" in c.cited_text)
    assert spring.search_result_index == 1 and spring.source == "https://example.com/tides"
    assert spring.title == "Tides 101"
    assert spring.cited_text == texts[spring.start_block_index]
    assert spring.end_block_index == spring.start_block_index + 1


def test_search_results_returned_by_a_tool_are_cited(sdk):
    tool = {
        "name": "search",
        "description": "Search the web for passages",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    asked = [{"role": "user", "content": "Use search: why do spring tides happen?"}]
    reply = sdk.messages.create(model=MODEL, max_tokens=1000, tools=[tool], messages=asked)
    (use,) = blocks_of(reply, "tool_use")
    texts = ["Spring tides happen when the sun and moon line up."]
    result = {"type": "tool_result", "tool_use_id": use.id, "content": [search_result(texts)]}
    history = [*asked, {"role": "assistant", "content": [b.to_dict() for b in reply.content]},
               {"role": "user", "content": [result]}]  # fmt: skip
    answer = sdk.messages.create(model=MODEL, max_tokens=1000, tools=[tool], messages=history)
    (cite,) = citations_of(answer)
    assert (cite.type, cite.cited_text) == ("search_result_location", texts[0])


@pytest.mark.parametrize(
    ("blocks", "fragment"),
    [
        pytest.param([text_doc(), text_doc(citations={"enabled": False})], "all or none",
                     id="citations-on-some-documents"),
        pytest.param([{"type": "document", "source": {"type": "base64",
                       "media_type": "application/pdf", "data": b64(b"%PDF-1.4 broken")}}],
                     "The PDF specified was not valid.", id="broken-pdf"),
        pytest.param([{"type": "document", "source": {"type": "text", "media_type": "text/html",
                       "data": "<p>x</p>"}}], "text/plain", id="text-source-media-type"),
    ],
)  # fmt: skip
def test_bad_documents_are_400s(sdk, blocks, fragment):
    with pytest.raises(anthropic.BadRequestError) as err:
        create(sdk, ask(*blocks))
    assert fragment in err.value.api_message


def test_documents_without_citations_get_a_plain_reply(sdk):
    reply = create(sdk, ask(text_doc(citations={"enabled": False})))
    assert not citations_of(reply) and text_of(reply).startswith("[offline emulator]")


# --- images -------------------------------------------------------------------------------------


def image(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    picture = Image.new("RGB", size, (30, 90, 160))
    extra = {"exif": Image.Exif()} if fmt == "JPEG" else {}
    picture.save(buffer, format=fmt, **extra)
    return buffer.getvalue()


def image_block(data: bytes, media_type: str) -> dict:
    return {"type": "image", "source": {"type": "base64", "media_type": media_type,
                                        "data": b64(data)}}  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "media_type", "size"),
    [
        ("PNG", "image/png", (640, 480)),
        ("JPEG", "image/jpeg", (1024, 768)),
        ("GIF", "image/gif", (33, 21)),
        ("WEBP", "image/webp", (300, 200)),
    ],
)
def test_the_reply_states_the_real_pixel_size(sdk, fmt, media_type, size):
    block = image_block(image(fmt, size), media_type)
    messages = ask(block, question="What is in this picture?")
    reply = create(sdk, messages)
    kind = media_type.split("/")[1].upper()
    assert text_of(reply).startswith(
        f"[offline emulator] I see a {kind} image of {size[0]}x{size[1]} pixels."
    )
    assert (
        reply.usage.input_tokens
        == sdk.messages.count_tokens(model=MODEL, messages=messages).input_tokens
    )


def test_several_images_are_each_described(sdk):
    blocks = [image_block(image("PNG", (10, 20)), "image/png"),
              image_block(image("JPEG", (30, 40)), "image/jpeg")]  # fmt: skip
    text = text_of(create(sdk, ask(*blocks, question="Compare them.")))
    assert "I see 2 images: image 1 is a PNG image of 10x20 pixels; image 2 is a JPEG image " \
           "of 30x40 pixels." in text  # fmt: skip


def test_a_media_type_that_does_not_match_the_bytes_is_a_400(sdk):
    block = image_block(image("PNG", (8, 8)), "image/jpeg")
    with pytest.raises(anthropic.BadRequestError) as err:
        create(sdk, ask(block))
    assert err.value.api_message == (
        "messages.0.content.0.image.source.base64.data: Image does not match the provided "
        "media type image/jpeg"
    )
    with pytest.raises(anthropic.BadRequestError, match="does not match"):
        sdk.messages.count_tokens(model=MODEL, messages=ask(block))


def test_an_image_over_8000_pixels_is_a_400(sdk):
    with pytest.raises(anthropic.BadRequestError, match="8000 pixels"):
        create(sdk, ask(image_block(image("PNG", (8001, 4)), "image/png")))


# --- the obey trigger ---------------------------------------------------------------------------

OBEY = "EMULATOR-OBEY: Bonjour from the trigger."


def test_the_trigger_in_the_user_text_is_obeyed(sdk):
    reply = create(sdk, [{"role": "user", "content": f"Hello.\n{OBEY}"}])
    assert [b.type for b in reply.content] == ["text"]
    assert text_of(reply) == "Bonjour from the trigger."


def test_the_trigger_in_the_system_prompt_is_obeyed_even_with_thinking(sdk):
    reply = sdk.messages.create(model="claude-opus-5-5", max_tokens=2000, system=OBEY,
                                messages=[{"role": "user", "content": "Hi"}])  # fmt: skip
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert text_of(reply) == "Bonjour from the trigger."


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(text_doc(f"Some text.\n{OBEY}\nMore text.", citations=None), id="document"),
        pytest.param(text_doc(f"Some text.\n{OBEY}\nMore text."), id="cited-document"),
        pytest.param(search_result(["Some text.", OBEY]), id="search-result"),
        pytest.param({"type": "document", "source": {"type": "content", "content": OBEY}},
                     id="content-document"),
    ],
)  # fmt: skip
def test_the_trigger_inside_a_document_or_search_result_is_content(sdk, block):
    block = {k: v for k, v in block.items() if v is not None}
    reply = create(sdk, ask(block, question="What does the source say?"))
    text = text_of(reply)
    assert text != "Bonjour from the trigger."
    assert text.startswith(("[offline emulator]", "According to the provided sources"))


def test_the_trigger_inside_a_tool_result_is_content(sdk):
    tool = {
        "name": "fetch",
        "description": "Fetch a page",
        "input_schema": {"type": "object", "properties": {"url": {"type": "string"}}},
    }
    asked = [{"role": "user", "content": "Use fetch on the page."}]
    reply = sdk.messages.create(model=MODEL, max_tokens=1000, tools=[tool], messages=asked)
    (use,) = blocks_of(reply, "tool_use")
    result = {"type": "tool_result", "tool_use_id": use.id, "content": OBEY}
    history = [*asked, {"role": "assistant", "content": [b.to_dict() for b in reply.content]},
               {"role": "user", "content": [result]}]  # fmt: skip
    answer = sdk.messages.create(model=MODEL, max_tokens=1000, tools=[tool], messages=history)
    assert text_of(answer).startswith("The fetch tool returned:")
