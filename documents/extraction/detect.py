"""What a file is, from its bytes: magic numbers first, then whether it decodes as text.

The filename never decides the family (PDF, DOCX, archive, text, unsupported); inside the text
family it only names the flavour (`.md` -> text/markdown), and CSV is confirmed by parsing.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ZIP = "application/zip"
HTML = "text/html"
CSV = "text/csv"
MARKDOWN = "text/markdown"
PLAIN = "text/plain"
OCTET_STREAM = "application/octet-stream"

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

# (offset, signature, media type, what to call it in a failure reason)
_SIGNATURES: list[tuple[int, bytes, str, str]] = [
    (0, b"\x89PNG\r\n\x1a\n", "image/png", "a PNG image"),
    (0, b"\xff\xd8\xff", "image/jpeg", "a JPEG image"),
    (0, b"GIF87a", "image/gif", "a GIF image"),
    (0, b"GIF89a", "image/gif", "a GIF image"),
    (0, b"\x7fELF", "application/x-executable", "an ELF executable"),
    (0, b"\x1f\x8b", "application/gzip", "a gzip archive"),
    (0, b"\xfd7zXZ\x00", "application/x-xz", "an XZ archive"),
    (0, b"\x28\xb5\x2f\xfd", "application/zstd", "a Zstandard archive"),
    (0, b"Rar!\x1a\x07", "application/vnd.rar", "a RAR archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed", "a 7-Zip archive"),
    (
        0,
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "application/x-ole-storage",
        "a legacy Office file (.doc, .xls or .ppt; save it as .docx or PDF)",
    ),
    (0, b"SQLite format 3\x00", "application/vnd.sqlite3", "an SQLite database"),
    (0, b"{\\rtf", "application/rtf", "an RTF document (save it as .docx or PDF)"),
    (0, b"OggS", "audio/ogg", "an Ogg media file"),
    (0, b"fLaC", "audio/flac", "a FLAC audio file"),
    (0, b"ID3", "audio/mpeg", "an MP3 audio file"),
    (4, b"ftyp", "video/mp4", "an MP4 or QuickTime media file"),
    (0, b"wOFF", "font/woff", "a web font"),
    (0, b"wOF2", "font/woff2", "a web font"),
]
_RIFF_KINDS = {
    b"WEBP": ("image/webp", "a WebP image"),
    b"WAVE": ("audio/wav", "a WAV audio file"),
    b"AVI ": ("video/x-msvideo", "an AVI video"),
}


@dataclass(frozen=True)
class Detected:
    media_type: str
    # "pdf", "docx", "archive", "text", "unsupported" or "corrupt"
    family: str
    # For unsupported files: what the bytes are, in words; for corrupt ones, the reason.
    description: str = ""


def detect(data: bytes) -> Detected:
    """Classify `data` by content. Text is only *presumed* here; decoding confirms it."""
    head = data[:1024]
    if b"%PDF-" in head:
        return Detected(PDF, "pdf")
    if head.startswith(ZIP_MAGICS):
        return _detect_zip(data)
    for offset, signature, media_type, description in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            # "ID3" and "{\rtf" are plausible text openings only in theory; the rest are binary.
            return Detected(media_type, "unsupported", description)
    if head.startswith(b"RIFF") and head[8:12] in _RIFF_KINDS:
        media_type, description = _RIFF_KINDS[head[8:12]]
        return Detected(media_type, "unsupported", description)
    return Detected(PLAIN, "text")


def _detect_zip(data: bytes) -> Detected:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype")[:100] if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        if b"word/" in data[:65536] and b"[Content_Types].xml" in data[:65536]:
            return Detected(DOCX, "corrupt", "corrupt DOCX: the file is truncated or damaged")
        return Detected(ZIP, "corrupt", "corrupt zip archive: the file is truncated or damaged")
    return classify_zip_names(names, mimetype)


def classify_zip_names(names: set[str], mimetype: bytes = b"") -> Detected:
    """A zip is a document container (DOCX, XLSX, ODT, EPUB) or a plain archive of files."""
    if "word/document.xml" in names:
        return Detected(DOCX, "docx")
    if "[Content_Types].xml" in names:
        if any(name.startswith("xl/") for name in names):
            return Detected(
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "unsupported",
                "an Excel workbook (save it as CSV)",
            )
        if any(name.startswith("ppt/") for name in names):
            return Detected(
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                "unsupported",
                "a PowerPoint presentation (save it as PDF)",
            )
        return Detected(ZIP, "unsupported", "an Office Open XML package that is not a document")
    if mimetype:
        kind = mimetype.decode("ascii", "replace").strip()
        return Detected(kind or ZIP, "unsupported", f"an {kind or 'unknown'} package")
    return Detected(ZIP, "archive", "a zip archive")


def zip_declared_entry_count(fileobj: io.BufferedIOBase | io.BytesIO) -> int | None:
    """The entry count from the end-of-central-directory record, read before `zipfile` builds
    one object per entry (an archive claiming millions of entries is refused on this number).
    None when the record is absent or the archive is ZIP64 (then zipfile's own parse decides)."""
    fileobj.seek(0, io.SEEK_END)
    size = fileobj.tell()
    tail_size = min(size, 22 + 65535)
    fileobj.seek(size - tail_size)
    tail = fileobj.read(tail_size)
    fileobj.seek(0)
    position = tail.rfind(b"PK\x05\x06")
    if position < 0 or len(tail) < position + 22:
        return None
    (total_entries,) = struct.unpack("<H", tail[position + 10 : position + 12])
    if total_entries == 0xFFFF:
        return None
    return total_entries


def has_nul_bytes(data: bytes) -> bool:
    return b"\x00" in data[:8192]
