"""Shared by the RAG benches: an environment of their own (database, Redis keys, emulator port),
document sets built from real texts (CPython's reference topics, man pages), the labelled
questions."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUN = uuid.uuid4().hex[:6]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def configure(name: str, *, db: str = "auto", emulator_port: int | None = None) -> None:
    """Environment variables for a bench run, before Django starts."""
    from claudeapp.testing.env import _postgres_reachable, _redis_reachable
    from claudeapp.testing.ports import free_port

    env = os.environ
    env.setdefault("DJANGO_SETTINGS_MODULE", "claudeapp.settings")
    env.setdefault("SECRET_KEY", f"bench-{RUN}-not-for-production")
    env.update(
        DEBUG="0", SECURE_SSL_REDIRECT="0", SESSION_COOKIE_SECURE="0", CSRF_COOKIE_SECURE="0",
        SECURE_HSTS_SECONDS="0", ALLOWED_HOSTS="127.0.0.1,localhost", LOG_LEVEL="ERROR",
        STATIC_MANIFEST="0", REDIS_KEY_PREFIX=f"bench-{name}-{RUN}",
        CHANNELS_PREFIX=f"bench-{name}-{RUN}", CELERY_QUEUE=f"bench-{name}-{RUN}",
        CELERY_KEY_PREFIX=f"bench-{name}-{RUN}:",
        CLAUDE_USER_RPM="0", CLAUDE_GLOBAL_RPM="0", CLAUDE_MAX_CONCURRENT="0",
        ANTHROPIC_API_KEY="emulator-key", CLAUDE_EMULATOR="1",
    )  # fmt: skip
    database = f"claudeapp_bench_{name}"
    if db == "auto":
        db = "postgres" if _postgres_reachable() else "sqlite"
    if db == "postgres":
        import psycopg

        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
    else:
        path = ROOT / "var" / f"{database}.sqlite3"
        for stale in path.parent.glob(path.name + "*"):
            stale.unlink()
        env["DATABASE_URL"] = f"sqlite:///{path}"
    if "REDIS_URL" not in env:
        if _redis_reachable():
            env["REDIS_URL"] = "redis://127.0.0.1:6379"
        else:
            from claudeapp.testing.env import _start_bundled_redis

            env["REDIS_URL"] = _start_bundled_redis()
    port = emulator_port or free_port()
    env["EMULATOR_PORT"] = str(port)
    env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{port}"


def setup_django() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def topic_texts() -> dict[str, str]:
    from pydoc_data.topics import topics

    return {f"{name}.txt": text for name, text in sorted(topics.items())}


_ROFF_REQUEST = re.compile(r"^\.[A-Za-z\\\"]+.*$", re.MULTILINE)
_ROFF_ESCAPE = re.compile(r"\\f[BIRP]|\\f\(..|\\-|\\&|\\\(..|\\[e*]")


def man_page_texts(limit: int) -> dict[str, str]:
    """Real man pages (section 1) as plain-ish text: roff requests and font escapes removed."""
    texts: dict[str, str] = {}
    for path in sorted(Path("/usr/share/man/man1").glob("*.1.gz")):
        try:
            raw = gzip.decompress(path.read_bytes()).decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        text = _ROFF_ESCAPE.sub("", _ROFF_REQUEST.sub("", raw))
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        if len(text) > 1500:
            texts[f"man1/{path.name[:-3]}"] = text
        if len(texts) >= limit:
            break
    return texts


def build_set(name: str, texts: dict[str, str], owner, *, max_chunks: int | None = None):  # noqa: ANN001
    """A set of ready documents, chunked by the documents app's chunker (no extraction)."""
    from django.conf import settings

    from documents.chunking import chunk_and_count
    from documents.models import Chunk, Document, DocumentSet

    document_set = DocumentSet.objects.create(name=f"{name} {RUN}", owner=owner)
    total = 0
    seen: set[str] = set()
    for filename, text in texts.items():
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:  # the same page under two names
            continue
        seen.add(digest)
        spans, tokens = chunk_and_count(
            text,
            max_tokens=settings.DOCUMENTS_CHUNK_TOKENS,
            overlap_tokens=settings.DOCUMENTS_CHUNK_OVERLAP_TOKENS,
        )
        if max_chunks is not None and total + len(spans) > max_chunks:
            spans = spans[: max_chunks - total]
            if not spans:
                break
        document = Document.objects.create(
            document_set=document_set, filename=filename, media_type="text/plain",
            size=len(text.encode()), sha256=digest,
            text=text, token_estimate=tokens, chunk_count=len(spans),
            status=Document.Status.READY,
        )  # fmt: skip
        Chunk.objects.bulk_create(
            Chunk(
                document=document,
                order=i,
                start=s.start,
                end=s.end,
                text=text[s.start : s.end],
                token_count=s.token_count,
            )  # fmt: skip
            for i, s in enumerate(spans)
        )
        total += len(spans)
        if max_chunks is not None and total >= max_chunks:
            break
    return document_set, total


# Labelled questions on CPython's reference topics: (question, topic, answer passage). The
# passage is copied from the topic's text; a retrieved chunk answers when it contains it.
LABELLED: list[tuple[str, str, str]] = [
    ("What does continue do inside the first suite of a while loop?", "while",
     'A "continue" statement executed in the first suite skips the rest of the suite'),
    ("When is the else clause of a for loop executed?", "for",
     'When the iterator is exhausted, the suite in the "else" clause, if present, is executed'),
    ("Is an exception handler executed when no exception occurs in the try clause?", "try",
     'When no exception occurs in the "try" clause, no exception handler is executed'),
    ("What common usage patterns does the with statement encapsulate?", "with",
     "usage patterns to be encapsulated for convenient reuse"),
    ("What value does return give when there is no expression list?", "return",
     '"return" leaves the current function call with the expression list (or "None")'),
    ("What kind of object does a lambda expression yield?", "lambda",
     'The expression "lambda parameters: expression" yields a function object'),
    ("How are identifiers listed in a global statement interpreted?", "global",
     "It means that the listed identifiers are to be interpreted as globals"),
    ("Which scopes can nonlocal rebind variables in?", "nonlocal",
     "allows encapsulated code to rebind variables outside of the local scope"),
    ("Does the code generator emit code for assert when optimization is requested?", "assert",
     "emits no code for an assert statement when optimization is requested"),
    ("What happens to the finally clause when continue leaves a try statement?", "continue",
     'that "finally" clause is executed before really starting the next loop cycle'),
    ("What value does the loop control target keep when a for loop ends with break?", "break",
     "the loop control target keeps its current value"),
    ("What happens to the local namespace when a class suite finishes execution?", "class",
     "its execution frame is discarded but its local namespace is saved"),
    ("Which global namespace does a function object refer to?", "function",
     "contains a reference to the current global namespace"),
    ("Can slicings be used as targets in assignment or del statements?", "slicings",
     'Slicings may be used as expressions or as targets in assignment or "del" statements'),
    ("What does the not operator yield?", "booleans",
     'The operator "not" yields "True" if its argument is false'),
    ("May rich comparison methods return non-boolean values?", "comparisons",
     "*rich comparison methods* may return non-boolean values"),
    ("Is augmented assignment performed in-place?", "augassign",
     "the actual operation is performed *in-place*"),
    ("Where can underscores occur in integer literals?", "integers",
     'One underscore can occur between digits, and after base specifiers like "0x"'),
    ("Is the range of floating point literals fixed?", "floating",
     "The allowed range of floating point literals is implementation-dependent"),
    ("Which value wins when a dict display sets the same key twice?", "dict",
     "Later values replace values already set by earlier dict items"),
    ("Are there complex number literals?", "numbers",
     "There are no complex literals"),
    ("Which Unicode standard annex is identifier syntax based on?", "identifiers",
     "based on the Unicode standard annex UAX-31"),
    ("Which operators group from right to left?", "operator-summary",
     "except for exponentiation and conditional expressions, which group from right to left"),
    ("When is an object considered false by default?", "truth",
     'an object is considered true unless its class defines either a "__bool__()" method'),
    ("What does import * bind?", "naming",
     "binds all names defined in the imported module, except those beginning with an underscore"),
    ("What is a block in the execution model?", "execmodel",
     "A *block* is a piece of Python program text that is executed as a unit"),
    ("When does the interpreter raise an exception?", "exceptions",
     "raises an exception when it detects a run-time error (such as division by zero)"),
    ("What does a context manager handle?", "context-managers",
     "handles the entry into, and the exit from, the desired runtime context"),
    ("Is a function defined with async def always a coroutine function?", "async",
     'Functions defined with "async def" syntax are always coroutine functions'),
    ("Which special methods customize the shift operations?", "shifting",
     'This operation can be customized using the special "__lshift__()" and "__rshift__()"'),
    ("What does the unary invert operator yield?", "unary",
     'The unary "~" (invert) operator yields the bitwise inversion of its integer argument'),
    ("How are built-in modules written when printed?", "typesmodules",
     "Modules built into the interpreter are written like this"),
    ("What is the only operation on a function object?", "typesfunctions",
     'The only operation on a function object is to call it'),
    ("How many null objects are there and what is it called?", "bltin-null-object",
     'There is exactly one null object, named "None"'),
    ("What is the ellipsis object named?", "bltin-ellipsis-object",
     'There is exactly one ellipsis object, named "Ellipsis"'),
    ("What surrounds replacement fields in format strings?", "formatstrings",
     "Format strings contain “replacement fields” surrounded by curly braces"),
    ("What class defines the debugger?", "debugger",
     'it is actually defined as the class "Pdb"'),
    ("When is __getattr__ not called?", "attribute-access",
     '"__getattr__()" is not called'),
    ("What should numeric methods do for operations a kind of number does not support?",
     "numeric-types", "should be left undefined"),
    ("What does x in s evaluate to?", "in",
     '"x in s" evaluates to "True" if *x* is a member of *s*'),
]  # fmt: skip


def labelled_questions() -> list[tuple[str, str, str]]:
    """The labelled questions whose passage really is in its topic (whitespace as in the text)."""
    from pydoc_data.topics import topics

    found = []
    for question, topic, passage in LABELLED:
        text = topics.get(topic, "")
        squashed = " ".join(text.split())
        if passage in squashed:
            found.append((question, topic, passage))
    return found


def cost_questions(n: int) -> list[str]:
    """`n` questions of the kind people ask about the reference (labelled ones, then variants)."""
    base = [q for q, _, _ in LABELLED]
    subjects = sorted({t for _, t, _ in LABELLED})
    extra = [f"What does the reference say about {s.replace('-', ' ')}?" for s in subjects]
    pool = base + extra + [f"Give an example of {s.replace('-', ' ')} usage." for s in subjects]
    return [pool[i % len(pool)] + ("" if i < len(pool) else f" (#{i})") for i in range(n)]
