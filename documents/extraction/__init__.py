"""From a file's bytes to clean text: `extract(data, filename=...)`.

The type comes from the content (see `detect`); each format has its module. Every failure is an
`ExtractionError` whose reason is written for the person who uploaded the file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

from documents.extraction import detect as detection
from documents.extraction.errors import ExtractionError
from documents.extraction.html import extract_html, looks_like_html
from documents.extraction.office import extract_docx
from documents.extraction.pdf import extract_pdf
from documents.extraction.tabular import render_csv, sniff_csv
from documents.extraction.text import check_not_binary, clean_text, decode_text

__all__ = ["Extracted", "ExtractionError", "extract"]

_MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdown", ".mkd")


@dataclass
class Extracted:
    media_type: str
    text: str
    # PDFs: [start, end) of each page's text, 1-based pages in order.
    pages: list[list[int]] | None = None
    metadata: dict = field(default_factory=dict)


def extract(data: bytes, *, filename: str) -> Extracted:
    """Detect what `data` is and extract its text; raise ExtractionError with a reason."""
    if not data:
        raise ExtractionError("empty file")
    detected = detection.detect(data)
    try:
        return _extract_detected(data, filename, detected)
    except ExtractionError as exc:
        exc.media_type = exc.media_type or detected.media_type
        raise


def _extract_detected(data: bytes, filename: str, detected: detection.Detected) -> Extracted:
    if detected.family == "pdf":
        text, pages, metadata = extract_pdf(data)
        return Extracted(detected.media_type, text, pages, metadata)
    if detected.family == "docx":
        text, metadata = extract_docx(data)
        return Extracted(detected.media_type, text, None, metadata)
    if detected.family == "archive":
        raise ExtractionError(
            "unsupported type: a zip archive inside an archive (only top-level archives are "
            "unpacked)",
            detected.media_type,
        )
    if detected.family == "corrupt":
        raise ExtractionError(detected.description, detected.media_type)
    if detected.family == "unsupported":
        raise ExtractionError(f"unsupported type: {detected.description}", detected.media_type)
    return _extract_text(data, filename)


def _extract_text(data: bytes, filename: str) -> Extracted:
    decoded, encoding = decode_text(data)
    check_not_binary(decoded)
    metadata: dict = {"encoding": encoding}
    if looks_like_html(decoded):
        text, html_metadata = extract_html(decoded)
        media_type = detection.HTML
        metadata.update(html_metadata)
    else:
        decoded = clean_text(decoded)
        delimiter = sniff_csv(decoded, filename=filename)
        text, media_type = decoded, detection.PLAIN
        if delimiter is not None:
            try:
                text, csv_metadata = render_csv(decoded, delimiter)
                media_type = detection.CSV
                metadata.update(csv_metadata)
            except csv.Error:
                pass  # not a well-formed table after all: keep it as plain text
        elif filename.lower().endswith(_MARKDOWN_SUFFIXES):
            media_type = detection.MARKDOWN
    if not text.strip():
        raise ExtractionError("no text found: the file holds only blank space", media_type)
    return Extracted(media_type, text, None, metadata)
