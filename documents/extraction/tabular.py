"""CSV: recognised by parsing (a consistent number of columns), rendered as one paragraph per
record of `column: value` lines, which reads well to a person and to a model."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator

from documents.extraction.text import clean_text

_CSV_SUFFIXES = (".csv", ".tsv")
_SAMPLE_CHARS = 16 * 1024
_SAMPLE_ROWS = 50
_DELIMITERS = ",;\t|"


def sniff_csv(text: str, *, filename: str) -> str | None:
    """The delimiter when `text` is a table: every sampled row, parsed with it (quotes and all),
    has the same number (two or more) of columns. A `.csv`/`.tsv` name lowers the bar from five
    rows to two. (csv.Sniffer would cost milliseconds a file; this stops at the first row that
    does not fit.)"""
    lowered = filename.lower()
    needed_rows = 2 if lowered.endswith(_CSV_SUFFIXES) else 5
    sample = text[:_SAMPLE_CHARS]
    if len(text) > len(sample):
        sample = sample[: sample.rfind("\n") + 1]  # whole lines only
    delimiters = "\t,;|" if lowered.endswith(".tsv") else _DELIMITERS
    for delimiter in delimiters:
        if delimiter not in sample:
            continue
        width, rows = 0, 0
        try:
            for row in itertools.islice(
                csv.reader(io.StringIO(sample), delimiter=delimiter), _SAMPLE_ROWS
            ):
                if not row:
                    continue
                if not width:
                    width = len(row)
                elif len(row) != width:
                    width = 0
                    break
                if width < 2:
                    break
                rows += 1
        except csv.Error:
            continue
        if width >= 2 and rows >= needed_rows:
            return delimiter
    return None


def csv_records(text: str, delimiter: str) -> tuple[list[str], Iterator[list[str]]]:
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(reader, [])
    return [column.strip() or f"column {i + 1}" for i, column in enumerate(header)], reader


def render_csv(text: str, delimiter: str) -> tuple[str, dict]:
    """Return (text, metadata): each record a paragraph of `column: value` lines."""
    header, records = csv_records(text, delimiter)
    paragraphs: list[str] = []
    count = 0
    for record in records:
        if not any(value.strip() for value in record):
            continue
        count += 1
        lines = []
        for index, value in enumerate(record):
            value = " ".join(value.split())
            if value:
                column = header[index] if index < len(header) else f"column {index + 1}"
                lines.append(f"{column}: {value}")
        paragraphs.append("\n".join(lines))
    if not paragraphs:
        paragraphs = [" | ".join(header)]
    return clean_text("\n\n".join(paragraphs)), {"csv_rows": count, "csv_columns": header[:100]}


def split_csv_rows(text: str, delimiter: str) -> Iterator[tuple[int, bytes]]:
    """(row number, a two-line CSV file: header + that row), for one-document-per-row imports."""
    header, records = csv_records(text, delimiter)
    for number, record in enumerate(records, start=1):
        if not any(value.strip() for value in record):
            continue
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerow(record)
        yield number, buffer.getvalue().encode("utf-8")
