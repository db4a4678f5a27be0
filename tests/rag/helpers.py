"""Helpers of the RAG tests: real documents, sets built without the extraction pipeline, an
answer's websocket, waiting."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pydoc_data.topics import topics
from typing import Any

import pytest

from documents.chunking import chunk_and_count

# Live tests commit their data; the seeded registry and prices come back after each one.
live = pytest.mark.django_db(transaction=True)


def topic(name: str) -> str:
    """A real reference text from CPython's pydoc data (e.g. "if", "while", "calls")."""
    return topics[name]


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def build_set(
    name: str,
    texts: dict[str, str],
    *,
    owner: Any,
    members: tuple = (),
    pages: dict[str, list[list[int]]] | None = None,
):
    """A set of ready documents (filename -> text), chunked as the documents app does."""
    from django.conf import settings

    from documents.chunking import with_pages
    from documents.models import Chunk, Document, DocumentSet

    document_set = DocumentSet.objects.create(name=name, owner=owner)
    if members:
        document_set.members.add(*members)
    for filename, text in texts.items():
        spans, tokens = chunk_and_count(
            text,
            max_tokens=settings.DOCUMENTS_CHUNK_TOKENS,
            overlap_tokens=settings.DOCUMENTS_CHUNK_OVERLAP_TOKENS,
        )
        doc_pages = (pages or {}).get(filename)
        spans = with_pages(spans, doc_pages)
        document = Document.objects.create(
            document_set=document_set,
            filename=filename,
            media_type="application/pdf" if doc_pages else "text/plain",
            size=len(text.encode()),
            sha256=hashlib.sha256(text.encode()).hexdigest(),
            text=text,
            token_estimate=tokens,
            chunk_count=len(spans),
            status=Document.Status.READY,
            metadata={"pages": doc_pages} if doc_pages else {},
        )
        Chunk.objects.bulk_create(
            Chunk(
                document=document,
                order=order,
                start=span.start,
                end=span.end,
                text=text[span.start : span.end],
                token_count=span.token_count,
                page_start=span.page_start,
                page_end=span.page_end,
            )
            for order, span in enumerate(spans)
        )
    return document_set


class AnswerSocket:
    """A websocket to one answer, as the page's htmx ws extension opens it."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.frames: list[str] = []

    def send(self, **data: Any) -> None:
        self.socket.send(json.dumps(data))

    def recv(self, timeout: float = 20.0) -> str:
        frame = self.socket.recv(timeout=timeout)
        self.frames.append(frame)
        return frame

    def until_done(self, timeout: float = 30.0) -> str:
        """Frames until the final one (the answer replaced out of band); returns it."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.1, deadline - time.monotonic()))
            if 'hx-swap-oob="outerHTML"' in frame and "rag-answer" in frame:
                return frame
