"""Answers as HTML: the model's Markdown through chat's sanitizing renderer, then numbered
citation markers (built here, after sanitizing, so they are the only links we add)."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html

from conversations.markdown import render_markdown

# Private-use characters mark where a cited block ends; they survive Markdown and the sanitizer
# and never come from the model (removed from its text first).
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARK = re.compile(f"{_OPEN}([0-9,]+){_CLOSE}")


def cited_html(
    *, blocks: list[dict], numbers: list[list[int]], citation_url: Callable[[int], str]
) -> str:
    """Text blocks as one Markdown document, each cited block followed by its numbered
    markers, each marker a link (`citation_url(n)`) to the passage highlighted in its document.
    Set-page answers and chat replies in a conversation bound to a set render through this."""
    parts: list[str] = []
    for block, cited in zip(blocks, numbers, strict=False):
        if block.get("type") != "text":
            continue
        text = str(block.get("text") or "").replace(_OPEN, "").replace(_CLOSE, "")
        if cited:
            stripped = text.rstrip()
            text = f"{stripped}{_OPEN}{','.join(map(str, cited))}{_CLOSE}{text[len(stripped) :]}"
        parts.append(text)
    html = render_markdown("".join(parts))

    def marker(match: re.Match[str]) -> str:
        links = "".join(
            format_html(
                '<a class="cite" href="{}#cited" data-cite="{}" title="Show passage {}">{}</a>',
                citation_url(int(n)),
                n,
                n,
                n,
            )
            for n in match.group(1).split(",")
        )
        return f'<sup class="cite-refs">{links}</sup>'

    return _MARK.sub(marker, html)


def answer_html(*, set_id: int, query_id: int, blocks: list[dict], numbers: list[list[int]]) -> str:
    """A set-page answer's HTML: its markers open `documents:rag-citation`."""
    return cited_html(
        blocks=blocks,
        numbers=numbers,
        citation_url=lambda n: reverse("documents:rag-citation", args=[set_id, query_id, n]),
    )


def render_answer(query, *, oob: bool = False) -> str:  # noqa: ANN001 - a RagQuery
    return render_to_string("rag/_answer.html", {"query": query, "oob": oob})


def render_answer_done(query) -> str:  # noqa: ANN001 - a RagQuery
    """Replaces the streaming answer on its page once it has ended (closes its socket)."""
    return render_answer(query, oob=True)
