"""Markdown as sanitized HTML, and where streamed Markdown may be rendered early."""

from __future__ import annotations

import re

import pytest

from claudeapp.replies import MarkdownSplitter, delta_fragment
from conversations.markdown import render_markdown, render_plain


def test_code_blocks_get_a_language_label_and_a_copy_button():
    html = render_markdown("```python\nprint('<hi>')\n```")
    assert '<span class="codeblock-lang">python</span>' in html
    assert '<button type="button" class="code-copy" data-action="copy">Copy</button>' in html
    assert "&lt;hi&gt;" in html and "<hi>" not in html


def test_tables_scroll_in_a_wrapper():
    html = render_markdown("| a | b |\n|---|---|\n| 1 | 2 |")
    assert html.startswith('<div class="table-wrap"><table>') and "<td>1</td>" in html


@pytest.mark.parametrize(
    "markdown",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "<a href='javascript:alert(1)'>x</a>",
        "![x](javascript:alert(1))",
        "[x](vbscript:msgbox(1))",
    ],
)
def test_links_cannot_run_script(markdown):
    html = render_markdown(markdown)
    for href in re.findall(r'href="([^"]*)"', html):
        assert href.lower().startswith(("http:", "https:", "mailto:")), href
    assert "<a href='" not in html and "<script" not in html


def test_safe_links_open_in_a_new_tab_without_referrer_and_images_become_links():
    html = render_markdown("[docs](https://example.com) ![chart](https://example.com/c.png)")
    assert 'href="https://example.com"' in html and 'target="_blank"' in html
    assert 'rel="noopener noreferrer nofollow"' in html
    assert "<img" not in html and ">chart</a>" in html


def test_raw_html_in_markdown_is_shown_as_text():
    html = render_markdown('<script>alert(1)</script><b onmouseover="x()">bold</b>')
    assert "<script" not in html and "<b" not in html and "&lt;script&gt;" in html


def test_user_text_keeps_its_line_breaks_and_nothing_else():
    assert render_plain("a <b>\nline\n\nnext") == "<p>a &lt;b&gt;<br>line</p><p>next</p>"


def test_the_splitter_commits_finished_paragraphs_only():
    splitter = MarkdownSplitter()
    assert splitter.advance("First para") == 0
    assert splitter.advance("First para\n\n") == 0  # the next paragraph has not begun
    text = "First para\n\nSecond"
    assert splitter.advance(text) == text.index("Second")


def test_the_splitter_never_commits_inside_a_code_fence_or_before_an_indented_line():
    splitter = MarkdownSplitter()
    text = "```py\na = 1\n\nb = 2\n"
    assert splitter.advance(text) == 0
    text += "```\n\nAfter"
    assert splitter.advance(text) == text.index("After")
    listing = MarkdownSplitter()
    items = "1. item\n\n   continued"
    assert listing.advance(items) == 0


def test_fragments_escape_text_and_append_or_replace():
    html = delta_fragment("m-1", text="<b>", thinking="a&b")
    assert '<span id="m-1-tail" hx-swap-oob="beforeend">&lt;b&gt;</span>' in html
    assert '<span id="m-1-thinking" hx-swap-oob="beforeend">a&amp;b</span>' in html
    replaced = delta_fragment("m-1", blocks="<p>x</p>", tail="rest")
    assert '<div id="m-1-blocks" hx-swap-oob="beforeend"><p>x</p></div>' in replaced
    assert '<span id="m-1-tail" hx-swap-oob="innerHTML">rest</span>' in replaced


def test_a_run_skips_the_channel_layer_only_while_every_socket_is_on_its_own_process():
    from claudeapp.replies import PROCESS_ID, remote_listeners

    me, other = PROCESS_ID.encode(), b"another-process"
    assert not remote_listeners({me: b"2"})
    assert remote_listeners({me: b"1", other: b"1"})
    assert remote_listeners({other: b"1"})
    # Nobody registered (or counts back at zero): a socket may be joining, so send it.
    assert remote_listeners({})
    assert remote_listeners({me: b"0", other: b"0"})
    assert not remote_listeners({me: b"1", other: b"0"})
