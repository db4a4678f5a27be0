"""The job page in a real browser: start a job from the form (estimate, then start), watch the
progress bar move, filter the results, open one, export. Screenshots go to var/artifacts/."""

from __future__ import annotations

import csv
import io
import time

import pytest
from playwright.sync_api import expect

from claudeapp.testing.fixtures import ARTIFACTS
from documents.classification.models import ClassificationJob
from tests.classification.conftest import LABELS, live, make_documents, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def job_page(transactional_db, jobs_stack, asgi_server_factory, session_cookie, chromium):
    """A browser page on a live server whose enqueues go to this test's worker and beat.
    (Chromium last: the database is set up before Playwright's loop runs in this thread.)"""
    stack = jobs_stack(CLASSIFICATION_BATCH_MAX_REQUESTS="15")
    server = asgi_server_factory(CLASSIFICATION_QUEUE=stack.queue)
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )  # a failed load is reported below with its address
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )

    def login(user) -> None:
        context.add_cookies(
            [{"name": "sessionid", "value": session_cookie(user), "url": server.url}]
        )

    def shot(name: str, width: int = 1280) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": width, "height": 860})
        page.wait_for_timeout(400)  # let the chart follow the new width
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    page.login, page.shot, page.base_url, page.errors = login, shot, server.url, errors
    yield page
    context.close()


@live
def test_a_staff_member_runs_a_job_from_the_browser(job_page, emu, document_set, staff_user):
    page = job_page
    emu.config(batch_seconds=6)  # a few of the page's 2 s refreshes see the batches run
    make_documents(document_set, 60)
    page.login(staff_user)

    # The new-job form: estimate first, then start.
    page.goto(f"{page.base_url}/sets/jobs/new/?set={document_set.pk}")
    labels = "\n".join(f"{label['name']}: {label['description']}" for label in LABELS)
    page.fill("textarea[name=labels]", labels)
    page.fill("textarea[name=instructions]", "Sort incoming business mail by what it asks of us.")
    page.check("input[name=extra_fields][value=confidence]")
    page.check("input[name=extra_fields][value=rationale]")
    page.click("[data-action=estimate]")
    assert page.inner_text('[data-estimate="documents"]') == "60"
    assert page.inner_text('[data-estimate="cost"]').startswith("$")
    page.shot("jobs-new-estimate")
    page.click("[data-action=start]")
    page.wait_for_url("**/sets/jobs/*/")
    job = ClassificationJob.objects.get()

    # The status panel refreshes itself: watch the bar move without a reload.
    seen: list[tuple[int, int]] = []
    shot_running = False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        # The status first: a finished job's panel is swapped no more, so what is read after
        # it comes from the same panel.
        status = page.locator("#job-status").get_attribute("data-status")
        done = int(page.locator("#job-status").get_attribute("data-done"))
        running = page.locator("[data-segment=running]").count()
        seen.append((done, running))
        if not shot_running and (running or 0 < done < 60):
            page.shot("jobs-running")
            shot_running = True
        if status == "completed":
            break
        time.sleep(0.25)
    assert seen[-1][0] == 60, seen
    assert seen[0][0] < 60
    assert any(r for _d, r in seen) or any(0 < d < 60 for d, _r in seen), seen
    assert page.inner_text("[data-job-status]") == "Completed"
    assert job.batches.count() == 4  # 60 documents, at most 15 a batch
    wait_for(lambda: page.locator("#label-chart[data-ready=true]").count(), timeout=10)
    page.wait_for_timeout(600)  # the chart's animation
    page.shot("jobs-completed")
    page.shot("jobs-completed-phone", width=390)
    page.set_viewport_size({"width": 1280, "height": 860})

    # The results table: filter by label, search, open a document with its rationale.
    rows = page.locator("#result-rows tbody tr")
    expect(rows).to_have_count(50)  # the first page of 60
    page.select_option("select[name=label]", "invoice")
    expect(rows).to_have_count(20)
    page.fill("input[name=q]", "invoice-00003")
    expect(rows).to_have_count(1)
    page.click("#result-rows tbody tr a")
    page.wait_for_selector("[data-rationale]")
    assert page.inner_text("[data-label]") == "invoice"
    page.shot("jobs-result")
    page.go_back()

    # Export: a CSV of every result.
    page.wait_for_selector("[data-export=csv]")
    with page.expect_download() as download:
        page.click("[data-export=csv]")
    content = open(download.value.path(), encoding="utf-8").read()  # noqa: SIM115
    rows = list(csv.DictReader(io.StringIO(content)))
    assert len(rows) == 60
    assert {row["label"] for row in rows} == {"invoice", "receipt", "contract"}
    page.goto(f"{page.base_url}/sets/jobs/")
    assert page.inner_text(f"#job-{job.pk} .job-badge") == "Completed"
    page.shot("jobs-list")
    assert not page.errors, page.errors  # no CSP violations or script errors
