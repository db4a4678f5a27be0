"""PDF text with page boundaries kept: page i covers `text[pages[i][0]:pages[i][1]]`."""

from __future__ import annotations

import io
import logging

from django.conf import settings

from documents.extraction.errors import ExtractionError
from documents.extraction.text import clean_text

# pypdf logs every repair it makes to a damaged file; the document's failure reason says enough.
logging.getLogger("pypdf").setLevel(logging.ERROR)

PAGE_SEPARATOR = "\n\n"


def _short(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return message[:160]


def extract_pdf(data: bytes) -> tuple[str, list[list[int]], dict]:
    """Return (text, page spans, metadata) or raise ExtractionError (corrupt, encrypted...)."""
    # Imported here: pypdf brings fontTools and Pillow (~30 MB), which a worker's supervising
    # process and a web process never need.
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
    except PyPdfError as exc:
        raise ExtractionError(f"corrupt PDF: {_short(exc)}") from None
    except Exception as exc:  # pypdf raises plain errors on some malformed files
        raise ExtractionError(f"corrupt PDF: {_short(exc)}") from None

    if reader.is_encrypted:
        try:
            # Many PDFs are "encrypted" with an empty user password (restrictions only).
            opened = reader.decrypt("")
        except (DependencyError, NotImplementedError):
            raise ExtractionError(
                "encrypted PDF: its encryption method is not supported; save an unencrypted copy"
            ) from None
        except Exception as exc:
            raise ExtractionError(f"encrypted PDF: {_short(exc)}") from None
        if not opened:
            raise ExtractionError("encrypted PDF: a password is needed to open it")

    max_pages = settings.DOCUMENTS_PDF_MAX_PAGES
    try:
        page_count = len(reader.pages)
        if page_count > max_pages:
            raise ExtractionError(f"PDF too long: {page_count} pages; the limit is {max_pages}")
        parts: list[str] = []
        pages: list[list[int]] = []
        position = 0
        for page in reader.pages:
            page_text = clean_text(page.extract_text() or "").strip()
            if parts:
                parts.append(PAGE_SEPARATOR)
                position += len(PAGE_SEPARATOR)
            parts.append(page_text)
            pages.append([position, position + len(page_text)])
            position += len(page_text)
    except ExtractionError:
        raise
    except FileNotDecryptedError:
        raise ExtractionError("encrypted PDF: a password is needed to open it") from None
    except Exception as exc:
        raise ExtractionError(f"corrupt PDF: {_short(exc)}") from None

    text = "".join(parts)
    if not text.strip():
        raise ExtractionError(
            "no text found: the PDF has no text layer (scanned pages are not read by OCR)"
        )
    metadata: dict = {"page_count": page_count}
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:
        title = None
    if title:
        metadata["title"] = str(title)[:300]
    return text, pages, metadata
