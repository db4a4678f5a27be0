"""In a real browser: ask from the set's page, watch the answer stream in, click a citation
marker and land on the passage, highlighted in its document. Screenshots go to
var/artifacts/rag-*.png."""

from __future__ import annotations

import re
import time

import pytest

from tests.rag.helpers import live

pytestmark = [live, pytest.mark.slow, pytest.mark.browser]
PARTS = ("blocks", "tail")


def test_ask_watch_it_stream_and_open_a_cited_passage(rag_worker, emulator_clean,
                                                      browser_page,
                                                      reference_set, user):  # fmt: skip
    from playwright.sync_api import expect

    page = browser_page
    emulator_clean.config(ttft_ms=300, tokens_per_second=30)
    page.login(user)
    # The set's own page: its Ask box loads in after the page.
    page.goto(f"{page.base_url}{reference_set.get_absolute_url()}")
    expect(page.get_by_role("heading", name="Ask these documents")).to_be_visible(timeout=30000)
    page.get_by_label("Your question").fill(
        "What happens to the else clause of a while loop when break runs?"
    )
    page.get_by_role("button", name="Ask").click()

    answer = page.locator("article.rag-answer").first
    expect(answer).to_have_attribute("data-status", "streaming")
    dom_id = answer.get_attribute("id")

    def shown() -> int:  # answer text on the page (thinking, kept hidden, not counted)
        parts = (t for part in PARTS for t in page.locator(f"#{dom_id}-{part}").all_text_contents())
        return len("".join(parts).strip())  # (no waiting: the parts go when the answer ends)

    deadline = time.monotonic() + 30
    while shown() < 40:  # text is arriving while the answer is still streaming
        assert answer.get_attribute("data-status") == "streaming", "it never showed streaming"
        assert time.monotonic() < deadline, "no answer text streamed in"
        page.wait_for_timeout(100)
    expect(answer.get_by_role("button", name="Stop")).to_be_visible()
    page.screenshot_as("rag-streaming")

    expect(answer).to_have_attribute("data-status", "complete", timeout=60000)
    markers = answer.locator("a.cite")
    expect(markers.first).to_be_visible()
    expect(answer.locator(".rag-sources li").first).to_be_visible()
    expect(page.locator("#rag-ask-form textarea")).to_have_value("")  # a fresh form
    page.screenshot_as("rag-answer")

    markers.first.click()
    page.wait_for_url(re.compile(r"/cite/1/#cited$"))
    mark = page.locator("mark#cited")
    expect(mark).to_be_visible()
    expect(mark).to_be_in_viewport()
    cited = mark.inner_text()
    assert (
        cited.strip()
        and cited.strip()
        in reference_set.documents.get(
            filename=page.locator("h1").inner_text().split(" ", 1)[1].strip()
        ).text
    )
    page.screenshot_as("rag-citation")
