"""The text a reader sees on an HTML page: scripts, styles and hidden elements dropped, the
title kept as the opening line, block elements turned into paragraphs."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from documents.extraction.text import clean_text

# Content never shown to a reader.
_SKIP = {"script", "style", "noscript", "template", "svg", "math", "iframe", "object"}
_BLOCK = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
    "h5", "h6", "header", "hr", "html", "legend", "li", "main", "nav", "ol", "p", "pre",
    "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "ul",
}  # fmt: skip
_CELL = {"td", "th"}
_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr",
}  # fmt: skip
_SPACES = re.compile(r"[ \t\n\r\f\v]+")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.current: list[str] = []
        self.title: list[str] = []
        self.skip_tag: str | None = None
        self.skip_depth = 0
        self.in_title = False
        self.pre_depth = 0

    def _flush(self) -> None:
        if self.current:
            raw = "".join(self.current)
            self.current = []
            block = raw.strip("\n") if self.pre_depth else _SPACES.sub(" ", raw).strip()
            if block.strip():
                self.blocks.append(block.rstrip())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip_tag is not None:
            if tag == self.skip_tag and tag not in _VOID:
                self.skip_depth += 1
            return
        if tag == "title":
            self.in_title = True
            return
        attributes = dict(attrs)
        hidden = (
            "hidden" in attributes
            or attributes.get("aria-hidden") == "true"
            or _HIDDEN_STYLE.search(attributes.get("style") or "")
        )
        if tag in _SKIP or (hidden and tag not in _VOID):
            self.skip_tag, self.skip_depth = tag, 1
            return
        if tag == "br":
            self.current.append("\n" if self.pre_depth else " ")
        elif tag in _CELL:
            self.current.append(" | " if self.current else "")
        elif tag == "img" and attributes.get("alt"):
            self.current.append(f" {attributes['alt']} ")
        elif tag in _BLOCK:
            self._flush()
            if tag == "pre":
                self.pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self.skip_tag is not None:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if self.skip_depth <= 0:
                    self.skip_tag = None
            return
        if tag == "title":
            self.in_title = False
        elif tag in _BLOCK:
            self._flush()
            if tag == "pre" and self.pre_depth:
                self.pre_depth -= 1

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif self.skip_tag is None:
            self.current.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def extract_html(html: str) -> tuple[str, dict]:
    """Return (visible text, metadata) for an HTML document already decoded to str."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    title = _SPACES.sub(" ", "".join(parser.title)).strip()
    blocks = parser.blocks
    # The title usually repeats as the first heading; keep it once, as the opening line.
    if title and (not blocks or blocks[0] != title):
        blocks = [title, *blocks]
    metadata = {"title": title} if title else {}
    return clean_text("\n\n".join(blocks)), metadata


_HTML_OPENING = re.compile(r"<!doctype\s+html|<html[\s>]", re.IGNORECASE)
_HTML_PARTS = re.compile(r"<(head|body)[\s>]", re.IGNORECASE)


def looks_like_html(text: str) -> bool:
    head = text[:2048].lstrip("\ufeff \t\r\n")
    if not head.startswith("<"):
        return False
    return bool(_HTML_OPENING.search(head) or _HTML_PARTS.search(head))
