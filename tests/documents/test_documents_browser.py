"""A person drags three files (one broken) onto a set page in Chromium and watches the rows turn
ready and failed, live, against the real server and a real Celery worker."""

from __future__ import annotations

import base64

import pytest

from documents import services

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("celery_worker"),
]

DROP_FILES = """(files) => {
  const transfer = new DataTransfer();
  for (const file of files) {
    const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], file.name, { type: file.type }));
  }
  return transfer;
}"""


def drop(page, selector: str, files: list[tuple[str, str, bytes]]) -> None:
    payload = [
        {"name": name, "type": media_type, "data": base64.b64encode(data).decode()}
        for name, media_type, data in files
    ]
    transfer = page.evaluate_handle(DROP_FILES, payload)
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, event, {"dataTransfer": transfer})


def test_dragging_three_files_shows_two_ready_and_one_failed_with_its_reason(
    browser_page, staff_user, user, samples
):
    page = browser_page
    errors: list[str] = []
    # CSP violations and script errors show here; a missing favicon does not count.
    page.on(
        "console",
        lambda message: (
            message.type == "error"
            and "Failed to load resource" not in message.text
            and errors.append(message.text)
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and not response.url.endswith("/favicon.ico")
            and errors.append(f"{response.status} {response.url}")
        ),
    )
    document_set = services.documentset_create(
        name="Python reference",
        description="CPython's language reference, for questions about statements and loops.",
        owner=staff_user,
        members=[user],
    )
    page.login(staff_user)
    page.goto(page.base_url + document_set.get_absolute_url())
    assert page.locator("[data-dropzone]").is_visible()

    broken = samples.pdf([samples.topic("with")[:1500]])
    drop(
        page,
        "[data-dropzone]",
        [
            ("if-statement.txt", "text/plain", samples.topic("if").encode()),
            ("for-loops.pdf", "application/pdf", samples.pdf([samples.topic("for")[:1800]])),
            ("with-statement.pdf", "application/pdf", broken[: len(broken) // 3]),
        ],
    )

    result = page.locator(".upload-result").first
    result.wait_for()
    assert "3 added" in result.inner_text()
    page.wait_for_function(
        """() => {
          const rows = (status) =>
            document.querySelectorAll(`#document-list tr[data-status="${status}"]`).length;
          return rows("ready") === 2 && rows("failed") === 1 && rows("pending") === 0;
        }""",
        timeout=45_000,
    )
    failed = page.locator('#document-list tr[data-status="failed"]')
    assert "with-statement.pdf" in failed.inner_text()
    assert "corrupt PDF" in failed.locator("[data-reason]").inner_text()
    ready = page.locator('#document-list tr[data-status="ready"]').all_inner_texts()
    assert any("if-statement.txt" in row for row in ready)
    assert any("for-loops.pdf" in row for row in ready)
    # The list stops polling once nothing is pending.
    assert "every 1s" not in (page.locator("#document-list").get_attribute("hx-trigger") or "")
    assert errors == [], errors

    page.screenshot_as("documents-set-upload-desktop")
    page.screenshot_as("documents-set-upload-phone", width=390, height=844)

    page.set_viewport_size({"width": 1280, "height": 860})
    page.locator('#document-list tr[data-status="ready"] a', has_text="for-loops.pdf").click()
    page.wait_for_url("**/documents/*/")
    assert page.locator(".chunk").count() >= 1
    assert "page 1" in page.locator(".chunk-head").first.inner_text()
    page.screenshot_as("documents-document-detail-desktop")
    page.screenshot_as("documents-document-detail-phone", width=390, height=844)


def test_a_member_sees_the_list_without_the_upload_zone(browser_page, staff_user, user):
    page = browser_page
    document_set = services.documentset_create(name="Read only", owner=staff_user, members=[user])
    page.login(user)
    page.goto(page.base_url + document_set.get_absolute_url())
    assert page.locator("h1", has_text="Read only").is_visible()
    assert page.locator("[data-dropzone]").count() == 0
    response = page.request.post(
        page.base_url + f"/sets/{document_set.pk}/upload/",
        multipart={"files": {"name": "a.txt", "mimeType": "text/plain", "buffer": b"Nope."}},
    )
    assert response.status in (403, 404)  # CSRF or visibility: either way nothing lands
    assert document_set.documents.count() == 0
