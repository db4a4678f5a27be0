"""Zip archives opened defensively: caps on entry count, total uncompressed size and compression
ratio (zip bombs), and entry names that never leave the archive's own folder (zip slip).

Entries are never written to disk under their own names: the importer reads them into memory
and stores them under content-addressed names, so a hostile name can only be refused.
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from django.conf import settings

from documents.extraction.detect import zip_declared_entry_count
from documents.extraction.errors import ExtractionError

# Below this, a high ratio is just a small repetitive file, not a bomb.
RATIO_FLOOR_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ZipCaps:
    max_entries: int
    max_total_size: int
    max_ratio: float

    @classmethod
    def from_settings(cls) -> ZipCaps:
        return cls(
            max_entries=settings.DOCUMENTS_ZIP_MAX_ENTRIES,
            max_total_size=settings.DOCUMENTS_ZIP_MAX_TOTAL_SIZE,
            max_ratio=settings.DOCUMENTS_ZIP_MAX_RATIO,
        )


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def open_zip(fileobj: IO[bytes], caps: ZipCaps | None = None) -> zipfile.ZipFile:
    """Open a zip and check the archive-wide caps before any entry is read."""
    caps = caps or ZipCaps.from_settings()
    declared = zip_declared_entry_count(fileobj)
    if declared is not None and declared > caps.max_entries:
        raise ExtractionError(
            f"zip bomb refused: {declared:,} entries; the limit is {caps.max_entries:,}"
        )
    try:
        archive = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ExtractionError(f"corrupt zip archive: {str(exc)[:120]}") from None
    try:
        check_caps(archive, caps)
    except ExtractionError:
        archive.close()
        raise
    return archive


def check_caps(archive: zipfile.ZipFile, caps: ZipCaps) -> None:
    infos = archive.infolist()
    if len(infos) > caps.max_entries:
        raise ExtractionError(
            f"zip bomb refused: {len(infos):,} entries; the limit is {caps.max_entries:,}"
        )
    total = sum(info.file_size for info in infos)
    if total > caps.max_total_size:
        raise ExtractionError(
            f"zip bomb refused: it expands to {human_size(total)}; "
            f"the limit is {human_size(caps.max_total_size)}"
        )
    compressed = sum(info.compress_size for info in infos)
    if total > RATIO_FLOOR_BYTES and total / max(compressed, 1) > caps.max_ratio:
        raise ExtractionError(
            f"zip bomb refused: compression ratio {total / max(compressed, 1):,.0f}:1; "
            f"the limit is {caps.max_ratio:,.0f}:1"
        )


def safe_member_name(name: str) -> str | None:
    """The entry's path inside the archive, or None when it would leave the archive's folder
    (absolute, drive-lettered, `..`) or is empty."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return None
    parts = [part for part in PurePosixPath(normalized).parts if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def member_problem(info: zipfile.ZipInfo, caps: ZipCaps) -> str | None:
    """Why this one entry is refused, in words, or None."""
    if safe_member_name(info.filename) is None:
        return "unsafe path in archive: it points outside the archive's folder"
    mode = info.external_attr >> 16
    if mode and stat.S_ISLNK(mode):
        return "symbolic link in archive: not followed"
    if info.flag_bits & 0x1:
        return "encrypted zip entry: a password is needed"
    if info.file_size > RATIO_FLOOR_BYTES and info.file_size / max(info.compress_size, 1) > (
        caps.max_ratio
    ):
        return (
            f"zip bomb refused: compression ratio "
            f"{info.file_size / max(info.compress_size, 1):,.0f}:1; "
            f"the limit is {caps.max_ratio:,.0f}:1"
        )
    return None


def is_skippable_member(info: zipfile.ZipInfo) -> bool:
    """Folders and the metadata litter of archivers (macOS resource forks, .DS_Store)."""
    name = info.filename.replace("\\", "/")
    base = name.rsplit("/", 1)[-1]
    return info.is_dir() or name.startswith("__MACOSX/") or base in {".DS_Store", "Thumbs.db"}
