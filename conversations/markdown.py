"""Model output and user text as sanitized HTML.

Markdown goes through markdown-it (raw HTML off: tags in the source come out as text), code
fences are highlighted by Pygments into class-only spans (no inline styles under our CSP), and
the result goes through nh3 with an allow-list: links only to http(s)/mailto, opened in a new tab
without a referrer; images become links (nothing loads from elsewhere). The sanitizer is the
second wall: even if a renderer rule let something through, no script, handler or style can.
"""

from __future__ import annotations

import html
import re

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

__all__ = ["RENDER_VERSION", "render_markdown", "render_plain"]

# Bump when the output changes, so stored renders are rebuilt.
RENDER_VERSION = 3

_LANG = re.compile(r"^[\w+#.-]{1,32}$")
_MAX_HIGHLIGHT = 60_000  # characters; longer code is shown plain (Pygments is slow on huge input)

_FORMATTER = HtmlFormatter(nowrap=True, classprefix="tok-")

_TAGS = {
    "a", "b", "blockquote", "br", "button", "code", "del", "div", "em", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "pre": {"class"},
}
_CLEANER = nh3.Cleaner(
    tags=_TAGS,
    clean_content_tags={"script", "style"},
    attributes=_ATTRIBUTES,
    tag_attribute_values={
        "button": {"type": {"button"}, "data-action": {"copy"}, "class": {"code-copy"}},
    },
    set_tag_attribute_values={"a": {"target": "_blank"}},
    link_rel="noopener noreferrer nofollow",
    url_schemes={"http", "https", "mailto"},
    url_relative="deny",
    strip_comments=True,
)


def _lexer_for(lang: str):
    try:
        return get_lexer_by_name(lang, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def _fence(self, tokens, idx, options, env) -> str:  # noqa: ANN001 - markdown-it renderer API
    token = tokens[idx]
    info = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    lang = info if _LANG.match(info) else ""
    code = token.content
    lexer = _lexer_for(lang.lower()) if lang and len(code) <= _MAX_HIGHLIGHT else None
    body = highlight(code, lexer, _FORMATTER) if lexer is not None else html.escape(code)
    label = html.escape(lang) if lang else "text"
    lang_class = f' class="language-{html.escape(lang.lower())}"' if lang else ""
    return (
        '<div class="codeblock">'
        f'<div class="codeblock-head"><span class="codeblock-lang">{label}</span>'
        '<button type="button" class="code-copy" data-action="copy">Copy</button></div>'
        f"<pre><code{lang_class}>{body}</code></pre></div>"
    )


def _code_block(self, tokens, idx, options, env) -> str:  # noqa: ANN001
    code = html.escape(tokens[idx].content)
    return (
        '<div class="codeblock"><div class="codeblock-head"><span class="codeblock-lang">text'
        '</span><button type="button" class="code-copy" data-action="copy">Copy</button></div>'
        f"<pre><code>{code}</code></pre></div>"
    )


def _image(self, tokens, idx, options, env) -> str:  # noqa: ANN001
    # Nothing is loaded from elsewhere (tracking pixels, CSP): an image becomes a link.
    token = tokens[idx]
    src = token.attrGet("src") or ""
    alt = self.renderInlineAsText(token.children or [], options, env) or src
    return f'<a href="{html.escape(src)}">{html.escape(alt)}</a>'


def _table_open(self, tokens, idx, options, env) -> str:  # noqa: ANN001
    return '<div class="table-wrap"><table>\n'


def _table_close(self, tokens, idx, options, env) -> str:  # noqa: ANN001
    return "</table></div>\n"


def _build() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _code_block)
    md.add_render_rule("image", _image)
    md.add_render_rule("table_open", _table_open)
    md.add_render_rule("table_close", _table_close)
    return md


_MD = _build()


def render_markdown(text: str) -> str:
    """Sanitized HTML for Markdown written by the model (or anyone else)."""
    if not text:
        return ""
    return _CLEANER.clean(_MD.render(text))


def render_plain(text: str) -> str:
    """User text as it was typed: escaped, paragraphs and line breaks kept."""
    paragraphs = re.split(r"\n{2,}", text.strip())
    return "".join(
        "<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs if p.strip()
    )


def pygments_css(style: str = "github-dark") -> str:
    """The token colours for chat.css (kept there; regenerate when changing the style)."""
    return HtmlFormatter(style=style, classprefix="tok-").get_style_defs(".codeblock pre")
