"""Each format extracts to the right text, the type comes from the bytes (never the name), and
every kind of bad input fails with a reason a person can read."""

from __future__ import annotations

import codecs
import os
import random
import shutil
from pathlib import Path

import pytest

from documents.extraction import ExtractionError, extract
from documents.extraction.detect import DOCX, PDF

# --- formats ------------------------------------------------------------------------------------


def test_it_extracts_utf8_text_exactly(samples):
    text = samples.topic("if")
    result = extract(text.encode("utf-8"), filename="if.txt")
    assert result.media_type == "text/plain"
    assert result.text == text
    assert result.metadata["encoding"] == "utf-8"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Café crème brûlée: the naïve façade of a déjà-vu. " * 3, "cp1252"),
        (
            "Litwo! Ojczyzno moja! ty jesteś jak zdrowie. Ile cię trzeba cenić, ten tylko się "
            "dowie, kto cię stracił. Dziś piękność twą w całej ozdobie widzę i opisuję.",
            "cp1250",
        ),
        ("Привет! Это проверка: текст в кодировке windows-1251, без метки. " * 3, "cp1251"),
    ],
)
def test_it_detects_the_encoding_instead_of_assuming_utf8(text, encoding):
    result = extract(text.encode(encoding), filename="notes.txt")
    assert result.text == text
    assert result.metadata["encoding"] == encoding


@pytest.mark.parametrize("bom_encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_it_reads_byte_order_marks(bom_encoding, samples):
    text = samples.topic("pass")
    result = extract(text.encode(bom_encoding), filename="pass.txt")
    assert result.text == text


def test_it_reads_utf16_without_a_bom(samples):
    text = samples.topic("del")
    assert extract(text.encode("utf-16-le"), filename="del.txt").text == text


def test_it_normalizes_line_ends(samples):
    text = samples.topic("break")
    result = extract(text.replace("\n", "\r\n").encode(), filename="break.txt")
    assert result.text == text


def test_markdown_is_text_labelled_markdown(samples):
    result = extract(samples.topic("while").encode(), filename="while.md")
    assert result.media_type == "text/markdown"
    assert result.text == samples.topic("while")


def test_csv_becomes_one_paragraph_per_record():
    data = b'name,role,city\nAda,"engineer, first",London\nGrace,admiral,"New York"\n'
    result = extract(data, filename="people.csv")
    assert result.media_type == "text/csv"
    assert result.text == (
        "name: Ada\nrole: engineer, first\ncity: London\n\n"
        "name: Grace\nrole: admiral\ncity: New York"
    )
    assert result.metadata["csv_rows"] == 2


def test_a_table_is_recognised_as_csv_by_content_whatever_its_name():
    rows = "\n".join(f"item-{i};{i * 3};{i % 2 == 0}" for i in range(12))
    result = extract(f"id;quantity;even\n{rows}\n".encode(), filename="export.dat")
    assert result.media_type == "text/csv"
    assert "quantity: 33" in result.text


def test_prose_named_csv_stays_text(samples):
    result = extract(samples.topic("if").encode(), filename="if.csv")
    assert result.media_type == "text/plain"


def test_html_keeps_visible_text_and_drops_scripts_styles_and_hidden(samples):
    body = samples.topic("calls")
    result = extract(samples.html("Calls", body), filename="calls.html")
    assert result.media_type == "text/html"
    assert result.text.startswith("Calls\n\n")
    first_paragraph = body.split("\n\n")[2]
    assert " ".join(first_paragraph.split()) in result.text
    for hidden in ("secretToken", "do-not-index", "color: red", "Skip me", "Enable JavaScript"):
        assert hidden not in result.text
    assert result.metadata["title"] == "Calls"


def test_html_entities_tables_and_preformatted_text():
    html = (
        b"<html><body><p>Fish &amp; chips &lt;3</p><table><tr><th>a</th><th>b</th></tr>"
        b"<tr><td>1</td><td>2</td></tr></table><pre>def f():\n    return 1</pre></body></html>"
    )
    text = extract(html, filename="page.htm").text
    assert text == "Fish & chips <3\n\na | b\n\n1 | 2\n\ndef f():\n    return 1"


def test_pdf_text_keeps_page_boundaries(samples):
    pages = [samples.topic("for")[:1200], samples.topic("while")[:1200], samples.topic("if")[:900]]
    result = extract(samples.pdf(pages), filename="loops.pdf")
    assert result.media_type == PDF
    assert len(result.pages) == 3
    for (start, end), source in zip(result.pages, pages, strict=True):
        page_text = result.text[start:end]
        # Same words in the same order (the PDF re-wraps lines).
        assert page_text.split()[:12] == source.split()[:12]
    assert result.pages[0][1] < result.pages[1][0] < result.pages[2][0]


def test_docx_paragraphs_and_tables(samples):
    paragraphs = samples.topic("try").split("\n\n")[:6]
    data = samples.docx(paragraphs, table=[["keyword", "meaning"], ["finally", "always runs"]])
    result = extract(data, filename="try.docx")
    assert result.media_type == DOCX
    for paragraph in paragraphs:
        assert paragraph.strip() in result.text
    assert "keyword | meaning\nfinally | always runs" in result.text
    assert result.metadata["title"] == "Reference excerpts"


def test_real_man_page_source_is_text(samples):
    pages = samples.man_pages(1)
    if not pages:
        pytest.skip("no man pages on this machine")
    result = extract(pages[0].encode(), filename="tool.1")
    assert result.media_type == "text/plain"
    assert result.text == pages[0].replace("\r\n", "\n")


# --- type from content, not the name ------------------------------------------------------------


def test_a_pdf_named_txt_is_read_as_pdf(samples):
    result = extract(samples.pdf([samples.topic("if")[:800]]), filename="notes.txt")
    assert result.media_type == PDF
    assert "statement" in result.text


def test_html_named_txt_is_read_as_html(samples):
    result = extract(samples.html("Calls", "A call."), filename="calls.txt")
    assert result.media_type == "text/html"
    assert "secretToken" not in result.text


def test_text_named_pdf_is_read_as_text(samples):
    result = extract(samples.topic("if").encode(), filename="if.pdf")
    assert result.media_type == "text/plain"


def test_a_docx_named_pdf_is_read_as_docx(samples):
    result = extract(samples.docx(["Hello from Word."]), filename="report.pdf")
    assert result.media_type == DOCX
    assert result.text == "Hello from Word."


# --- bad input ----------------------------------------------------------------------------------


def reason_for(data: bytes, filename: str) -> ExtractionError:
    with pytest.raises(ExtractionError) as caught:
        extract(data, filename=filename)
    return caught.value


def test_empty_file_fails():
    assert reason_for(b"", "empty.txt").reason == "empty file"


def test_blank_file_fails():
    assert reason_for(b"   \n\n\t \n", "blank.txt").reason.startswith("no text found")


def test_binary_junk_named_txt_fails_as_binary():
    junk = random.Random(7).randbytes(5000)
    error = reason_for(junk, "notes.txt")
    assert error.reason.startswith("unsupported type: binary data")


def test_an_executable_named_txt_fails_and_says_what_it_is():
    true = Path(shutil.which("true") or "/bin/true").read_bytes()
    assert reason_for(true, "readme.txt").reason == "unsupported type: an ELF executable"


def test_an_image_named_pdf_fails_as_unsupported():
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(200)
    error = reason_for(png, "scan.pdf")
    assert error.reason == "unsupported type: a PNG image"
    assert error.media_type == "image/png"


def test_a_legacy_word_file_is_unsupported_with_advice():
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)
    assert "save it as .docx" in reason_for(ole, "old.doc").reason


def test_control_characters_without_nuls_are_binary():
    junk = bytes(random.Random(3).choice(range(1, 32)) for _ in range(3000))
    assert reason_for(junk, "data.txt").reason.startswith("unsupported type: binary data")


def test_undecodable_text_fails():
    rng = random.Random(11)
    # High bytes only: not UTF-8 and no code page makes sense of them.
    data = bytes(rng.randrange(0x80, 0x100) for _ in range(4000))
    assert reason_for(data, "letter.txt").reason.startswith("undecodable text")


def test_a_bom_that_lies_is_undecodable():
    data = codecs.BOM_UTF8 + b"caf\xe9 \xff\xfe broken"
    assert reason_for(data, "bom.txt").reason.startswith("undecodable text")


def test_corrupt_pdf_fails(samples):
    data = samples.pdf([samples.topic("if")])
    error = reason_for(data[: len(data) // 3], "cut.pdf")
    assert error.reason.startswith("corrupt PDF")
    assert error.media_type == PDF


def test_garbage_after_a_pdf_header_fails_as_corrupt():
    error = reason_for(b"%PDF-1.7\n" + random.Random(5).randbytes(3000), "fake.pdf")
    assert error.reason.startswith("corrupt PDF")


def test_encrypted_pdf_fails(samples):
    data = samples.pdf([samples.topic("if")[:500]], user_password="s3cret")
    assert reason_for(data, "locked.pdf").reason == "encrypted PDF: a password is needed to open it"


def test_pdf_encrypted_only_against_editing_is_read(samples):
    data = samples.pdf(["Readable by anyone, editable by the owner."], user_password="")
    assert "Readable by anyone" in extract(data, filename="restricted.pdf").text


def test_pdf_without_a_text_layer_fails(samples):
    error = reason_for(samples.pdf(["", ""]), "scan.pdf")
    assert error.reason.startswith("no text found")


def test_corrupt_docx_fails(samples):
    data = samples.docx(samples.topic("try").split("\n\n"))
    error = reason_for(data[: len(data) // 2], "cut.docx")
    assert error.reason.startswith("corrupt DOCX")


def test_a_docx_bomb_is_refused_before_python_docx_reads_it(samples, settings):
    settings.DOCUMENTS_ZIP_MAX_TOTAL_SIZE = 2 * 1024 * 1024
    import io
    import zipfile

    base = samples.docx(["Small."])
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(base)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("word/media/padding.bin", bytes(5 * 1024 * 1024))
    assert reason_for(buffer.getvalue(), "big.docx").reason.startswith("zip bomb refused")


def test_a_zip_inside_a_document_position_is_unsupported(samples):
    data = samples.zip({"a.txt": b"hello"})
    assert "zip archive inside an archive" in reason_for(data, "nested.zip").reason


def test_nul_bytes_never_reach_the_text(samples):
    data = samples.pdf(["Tab\tand text"])
    assert "\x00" not in extract(data, filename="x.pdf").text
