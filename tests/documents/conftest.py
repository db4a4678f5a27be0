"""Fixtures for the documents tests: real texts (pydoc's reference topics, man pages), PDFs and
DOCX files built here with fpdf2 and python-docx, broken files made on purpose, zip archives."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from pydoc_data.topics import topics
from types import SimpleNamespace

import pytest
from django.conf import settings

# Stored originals go to a directory of this run, shared with the worker and live server that
# the session fixtures start later (they inherit the environment).
if "MEDIA_ROOT" not in os.environ:
    os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="claudeapp-test-media-")
    settings.MEDIA_ROOT = os.environ["MEDIA_ROOT"]


def topic(name: str) -> str:
    """A real reference text from CPython's pydoc data (e.g. "if", "while", "calls")."""
    return topics[name]


def make_pdf(pages: list[str], *, user_password: str | None = None) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(auto=False)
    if user_password is not None:
        pdf.set_encryption(owner_password="owner-secret", user_password=user_password)
    pdf.set_font("helvetica", size=9)
    for page in pages:
        pdf.add_page()
        if page:
            pdf.multi_cell(0, 4, page.encode("latin-1", "replace").decode("latin-1"))
    return bytes(pdf.output())


def make_docx(paragraphs: list[str], table: list[list[str]] | None = None) -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "Reference excerpts"
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def make_html(title: str, body_text: str) -> bytes:
    paragraphs = "".join(f"<p>{p}</p>" for p in body_text.split("\n\n") if p.strip())
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>body {{ color: red }}</style>"
        "<script>window.secretToken = 'do-not-index';</script></head>"
        f"<body><nav hidden>Skip me</nav><h1>{title}</h1>{paragraphs}"
        "<noscript>Enable JavaScript</noscript></body></html>"
    ).encode()


def man_page_text(limit: int = 3) -> list[str]:
    """A few real man pages (gzipped roff) as text, when the machine has them."""
    import gzip

    texts = []
    for path in sorted(Path("/usr/share/man/man1").glob("*.1.gz"))[:50]:
        try:
            raw = gzip.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if len(raw) > 2000:
            texts.append(raw)
        if len(texts) >= limit:
            break
    return texts


@pytest.fixture
def samples() -> SimpleNamespace:
    return SimpleNamespace(
        topic=topic,
        pdf=make_pdf,
        docx=make_docx,
        zip=make_zip,
        html=make_html,
        man_pages=man_page_text,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A folder of mixed real documents, one broken, one duplicate, one hidden."""
    root = tmp_path / "reference"
    (root / "statements").mkdir(parents=True)
    (root / "statements" / "if.txt").write_text(topic("if"))
    (root / "statements" / "while.md").write_text(topic("while"))
    (root / "calls.html").write_bytes(make_html("Calls", topic("calls")))
    (root / "numbers.csv").write_text("name,value\npi,3.14159\ne,2.71828\n")
    (root / "for.pdf").write_bytes(make_pdf([topic("for")[:1500], topic("for")[1500:3000]]))
    (root / "try.docx").write_bytes(make_docx(topic("try").split("\n\n")[:8]))
    (root / "broken.pdf").write_bytes(make_pdf([topic("if")])[:400])
    (root / "statements" / "old").mkdir()
    (root / "statements" / "old" / "copy-of-if.txt").write_text(topic("if"))
    (root / ".hidden.txt").write_text("never imported")
    yield root


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The shared user fixtures set real passwords; PBKDF2 costs ~0.7 s a user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def documents_urls(settings) -> None:
    settings.ROOT_URLCONF = "tests.documents.urls"


def _project_includes_documents() -> bool:
    from django.urls import URLResolver

    from claudeapp.urls import urlpatterns

    return any(isinstance(p, URLResolver) and p.namespace == "documents" for p in urlpatterns)


@pytest.fixture(scope="session")
def asgi_server(asgi_server, django_db_blocker):
    """The shared live server once the project routes /sets/ to documents.urls; until then, one
    of our own whose settings add that route (so the browser tests run either way)."""
    if _project_includes_documents():
        yield asgi_server
        return
    from claudeapp.testing.processes import AsgiServer, child_env

    with django_db_blocker.unblock():
        server = AsgiServer(env=child_env(DJANGO_SETTINGS_MODULE="tests.documents.settings"))
        server.start()
    yield server
    server.stop()
