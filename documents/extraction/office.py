"""DOCX text through python-docx: body paragraphs and tables in document order.

Only the main document part is parsed (python-docx's own XML classes and its Document,
Paragraph and Table API over it). Opening the whole package with `docx.Document()` parses
styles, theme, numbering and settings too: twenty times slower, for text that is not there.
"""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING

from documents.extraction.archives import ZipCaps, open_zip
from documents.extraction.errors import ExtractionError
from documents.extraction.text import clean_text

if TYPE_CHECKING:
    from docx.table import Table

_OFFICE_DOCUMENT_TYPES = {
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument",
    "http://purl.oclc.org/ooxml/officeDocument/relationships/officeDocument",
}


def _table_lines(table: Table) -> list[str]:
    lines = []
    for row in table.rows:
        cells: list[str] = []
        seen: list[object] = []
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans.
            if any(cell._tc is other for other in seen):
                continue
            seen.append(cell._tc)
            cells.append(" ".join(cell.text.split()))
        line = " | ".join(cells).strip(" |")
        if line:
            lines.append(line)
    return lines


def _main_part(archive: zipfile.ZipFile) -> str:
    """The package's main document part, from its relationships (usually word/document.xml)."""
    from docx.oxml.parser import parse_xml

    try:
        relationships = parse_xml(archive.read("_rels/.rels"))
    except KeyError:
        return "word/document.xml"
    for relationship in relationships:
        if relationship.get("Type") in _OFFICE_DOCUMENT_TYPES and relationship.get("Target"):
            return relationship.get("Target").lstrip("/")
    return "word/document.xml"


def _title(archive: zipfile.ZipFile) -> str:
    from docx.oxml.parser import parse_xml

    try:
        return parse_xml(archive.read("docProps/core.xml")).title_text or ""
    except Exception:
        return ""


def extract_docx(data: bytes) -> tuple[str, dict]:
    """Return (text, metadata) or raise ExtractionError."""
    # python-docx and lxml (~20 MB) load with the first DOCX, not with every process.
    from docx.document import Document as DocxDocument
    from docx.oxml.parser import parse_xml
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    # The parts are inflated in memory: refuse bombs before reading any.
    with open_zip(io.BytesIO(data), ZipCaps.from_settings()) as archive:
        try:
            document = DocxDocument(parse_xml(archive.read(_main_part(archive))), None)
            blocks: list[str] = []
            for item in document.iter_inner_content():
                if isinstance(item, Paragraph):
                    text = item.text.strip()
                    if text:
                        blocks.append(text)
                elif isinstance(item, Table):
                    lines = _table_lines(item)
                    if lines:
                        blocks.append("\n".join(lines))
        except Exception as exc:
            message = str(exc).strip()
            reason = message.splitlines()[0][:160] if message else type(exc).__name__
            raise ExtractionError(f"corrupt DOCX: {reason}") from None
        title = _title(archive)
    text = clean_text("\n\n".join(blocks))
    if not text.strip():
        raise ExtractionError("no text found: the DOCX has no text")
    return text, ({"title": title[:300]} if title else {})
