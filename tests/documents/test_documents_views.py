"""Every view of the documents app: who may see what (404 for everyone else), uploads, the live
list, the document page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from documents import services
from documents.models import Document, DocumentSet

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def group_member(django_user_model):
    member = django_user_model.objects.create_user(username="gina", password="x-long-password-1")
    group = Group.objects.create(name="analysts")
    member.groups.add(group)
    return member


@pytest.fixture
def document_set(staff_user, user, group_member) -> DocumentSet:
    document_set = services.documentset_create(
        name="Handbook",
        description="The staff handbook.",
        owner=staff_user,
        members=[user],
        member_groups=[Group.objects.get(name="analysts")],
    )
    return document_set


@pytest.fixture
def document(document_set, samples) -> Document:
    report = services.documents_import(
        document_set=document_set,
        incoming=services.incoming_from_uploads(
            [SimpleUploadedFile("if.txt", samples.topic("if").encode())]
        ),
    )
    services.documents_extract(document_ids=report.document_ids)
    return Document.objects.get(pk=report.document_ids[0])


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def set_urls(document_set: DocumentSet, document: Document) -> dict[str, str]:
    pk = document_set.pk
    return {
        "set-detail": reverse("documents:set-detail", args=[pk]),
        "document-list": reverse("documents:document-list", args=[pk]),
        "document-detail": reverse("documents:document-detail", args=[pk, document.pk]),
        "document-original": reverse("documents:document-original", args=[pk, document.pk]),
        "set-edit": reverse("documents:set-edit", args=[pk]),
        "set-delete": reverse("documents:set-delete", args=[pk]),
        "upload": reverse("documents:upload", args=[pk]),
    }


READ_VIEWS = {"set-detail", "document-list", "document-detail", "document-original"}
MANAGE_VIEWS = {"set-edit", "set-delete", "upload"}


# --- permissions --------------------------------------------------------------------------------


@pytest.mark.parametrize("member_elsewhere", [False, True])
def test_non_members_get_404_on_every_set_view(
    member_elsewhere, document_set, document, other_user, staff_user
):
    if member_elsewhere:
        services.documentset_create(name="Elsewhere", owner=staff_user, members=[other_user])
    client = client_for(other_user)
    for name, url in set_urls(document_set, document).items():
        assert client.get(url, **HTMX).status_code == 404, name
        assert client.post(url, **HTMX).status_code == 404, name
    assert client.get(reverse("documents:set-create")).status_code == 404
    assert client.post(reverse("documents:set-create"), {"name": "x"}).status_code == 404


@pytest.mark.parametrize("who", ["user", "group_member"])
def test_members_read_but_cannot_manage_or_upload(request, who, document_set, document, samples):
    client = client_for(request.getfixturevalue(who))
    urls = set_urls(document_set, document)
    for name in READ_VIEWS:
        assert client.get(urls[name], **HTMX).status_code == 200, name
    for name in MANAGE_VIEWS:
        assert client.get(urls[name]).status_code == 404, name
        assert client.post(urls[name], {"name": "Renamed"}).status_code == 404, name
    upload = SimpleUploadedFile("new.txt", b"Members cannot add this.")
    assert client.post(urls["upload"], {"files": [upload]}, **HTMX).status_code == 404
    assert client.get(reverse("documents:set-create")).status_code == 404
    assert Document.objects.count() == 1
    document_set.refresh_from_db()
    assert document_set.name == "Handbook"
    assert b"data-upload" not in client.get(urls["set-detail"]).content


@pytest.mark.parametrize("who", ["staff_user", "admin_user"])
def test_staff_reach_every_view(request, who, document_set, document):
    client = client_for(request.getfixturevalue(who))
    for name, url in set_urls(document_set, document).items():
        expected = 405 if name == "upload" else 200
        assert client.get(url, **HTMX).status_code == expected, name
    assert client.get(reverse("documents:set-create")).status_code == 200
    assert b"data-upload" in client.get(set_urls(document_set, document)["set-detail"]).content


def test_anonymous_visitors_are_sent_to_log_in(document_set, document):
    client = Client()
    for name, url in set_urls(document_set, document).items():
        response = client.get(url)
        assert response.status_code == 302, name
        assert response.url.startswith(reverse("login"))


def test_a_document_is_only_reachable_through_its_own_set(document_set, document, user, staff_user):
    other = services.documentset_create(name="Members too", owner=staff_user, members=[user])
    client = client_for(user)
    wrong = reverse("documents:document-detail", args=[other.pk, document.pk])
    assert client.get(wrong).status_code == 404


def test_the_set_list_shows_only_visible_sets(document_set, user, other_user, staff_user):
    services.documentset_create(name="Secret", owner=staff_user)
    assert "Handbook" in client_for(user).get(reverse("documents:set-list")).text
    assert "Secret" not in client_for(user).get(reverse("documents:set-list")).text
    listing = client_for(other_user).get(reverse("documents:set-list")).text
    assert "Handbook" not in listing and "not a member of any document set" in listing
    staff_listing = client_for(staff_user).get(reverse("documents:set-list")).text
    assert "Handbook" in staff_listing and "Secret" in staff_listing


# --- managing sets ------------------------------------------------------------------------------


def test_staff_create_edit_and_delete_a_set(staff_user, user):
    client = client_for(staff_user)
    response = client.post(
        reverse("documents:set-create"),
        {"name": "Contracts", "description": "Signed ones.", "members": [user.pk]},
    )
    document_set = DocumentSet.objects.get(name="Contracts")
    assert response.status_code == 302 and response.url == document_set.get_absolute_url()
    assert document_set.owner == staff_user
    assert list(document_set.members.all()) == [user]

    client.post(
        reverse("documents:set-edit", args=[document_set.pk]),
        {"name": "Contracts 2024", "description": "", "members": []},
    )
    document_set.refresh_from_db()
    assert document_set.name == "Contracts 2024"
    assert document_set.members.count() == 0

    confirm = client.get(reverse("documents:set-delete", args=[document_set.pk]))
    assert "cannot be undone" in confirm.text
    client.post(reverse("documents:set-delete", args=[document_set.pk]))
    assert not DocumentSet.objects.filter(pk=document_set.pk).exists()


def test_set_names_are_unique(staff_user, document_set):
    response = client_for(staff_user).post(reverse("documents:set-create"), {"name": "Handbook"})
    assert response.status_code == 200
    assert "already exists" in response.text


# --- uploading ----------------------------------------------------------------------------------


def test_staff_upload_many_files_at_once_and_bad_ones_are_reported(
    staff_user, document_set, samples, settings
):
    settings.DOCUMENTS_MAX_FILE_SIZE = 4000
    files = [
        SimpleUploadedFile("if.txt", samples.topic("if").encode()),
        SimpleUploadedFile("for.pdf", samples.pdf([samples.topic("for")[:600]])),
        SimpleUploadedFile("empty.txt", b""),
        SimpleUploadedFile("huge.txt", b"words " * 2000),
        SimpleUploadedFile("again.txt", samples.topic("if").encode()),
    ]
    response = client_for(staff_user).post(
        reverse("documents:upload", args=[document_set.pk]), {"files": files}, **HTMX
    )
    assert response.status_code == 200
    assert response["HX-Trigger"] == "documents:uploaded"
    text = response.text
    assert "2 added" in text
    assert "1 duplicate skipped" in text
    assert "2 refused" in text
    assert "empty file" in text
    assert "too large: 11.7 KB; the limit is 3.9 KB" in text
    assert sorted(Document.objects.values_list("filename", flat=True)) == ["for.pdf", "if.txt"]
    assert set(Document.objects.values_list("status", flat=True)) == {"pending"}


def test_an_oversize_upload_is_not_kept_while_the_others_land(staff_user, document_set, settings):
    settings.DOCUMENTS_MAX_FILE_SIZE = 70_000
    big = SimpleUploadedFile("big.txt", b"a" * 200_000)
    small = SimpleUploadedFile("small.txt", b"A small file that fits.")
    response = client_for(staff_user).post(
        reverse("documents:upload", args=[document_set.pk]), {"files": [big, small]}, **HTMX
    )
    assert "too large: 195.3 KB" in response.text
    assert list(Document.objects.values_list("filename", flat=True)) == ["small.txt"]


def test_upload_without_htmx_redirects_with_a_message(staff_user, document_set):
    client = client_for(staff_user)
    response = client.post(
        reverse("documents:upload", args=[document_set.pk]),
        {"files": [SimpleUploadedFile("a.txt", b"Some text.")]},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == document_set.get_absolute_url()
    assert "1 uploaded." in response.text


def test_a_zip_uploaded_from_the_browser_is_unpacked(staff_user, document_set, samples):
    archive = samples.zip(
        {"a/if.txt": samples.topic("if").encode(), "../escape.txt": b"Nope.", "b/empty.txt": b""}
    )
    response = client_for(staff_user).post(
        reverse("documents:upload", args=[document_set.pk]),
        {"files": [SimpleUploadedFile("bundle.zip", archive)]},
        **HTMX,
    )
    assert "1 added" in response.text and "2 refused" in response.text
    assert "unsafe path in archive" in response.text
    assert list(Document.objects.values_list("filename", flat=True)) == ["bundle.zip/a/if.txt"]


def test_csv_rows_option_from_the_browser(staff_user, document_set):
    csv = SimpleUploadedFile("people.csv", b"name,role\nAda,engineer\nGrace,admiral\n")
    client_for(staff_user).post(
        reverse("documents:upload", args=[document_set.pk]),
        {"files": [csv], "csv_rows": "on"},
        **HTMX,
    )
    assert sorted(Document.objects.values_list("filename", flat=True)) == [
        "people.csv/row-1.csv",
        "people.csv/row-2.csv",
    ]


def test_uploads_are_csrf_protected(staff_user, document_set):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.post(
        reverse("documents:upload", args=[document_set.pk]),
        {"files": [SimpleUploadedFile("a.txt", b"Some text.")]},
    )
    assert response.status_code == 403
    assert Document.objects.count() == 0


# --- the live list and the document page --------------------------------------------------------


def test_the_list_polls_while_documents_are_pending(staff_user, document_set, samples):
    client = client_for(staff_user)
    url = reverse("documents:document-list", args=[document_set.pk])
    report = services.documents_import(
        document_set=document_set,
        incoming=services.incoming_from_uploads(
            [SimpleUploadedFile("if.txt", samples.topic("if").encode())]
        ),
    )
    pending = client.get(url, **HTMX).text
    assert 'hx-trigger="every 1s, documents:uploaded from:body"' in pending
    assert "status-pending" in pending

    services.documents_extract(document_ids=report.document_ids)
    done = client.get(url, **HTMX).text
    assert "every 1s" not in done
    assert "status-ready" in done
    assert done.lstrip().startswith('<section id="document-list"')


def test_the_list_shows_failure_reasons_and_filters_by_status(staff_user, document_set, samples):
    report = services.documents_import(
        document_set=document_set,
        incoming=services.incoming_from_uploads(
            [
                SimpleUploadedFile("if.txt", samples.topic("if").encode()),
                SimpleUploadedFile("cut.pdf", samples.pdf([samples.topic("for")])[:500]),
            ]
        ),
    )
    services.documents_extract(document_ids=report.document_ids)
    url = reverse("documents:document-list", args=[document_set.pk])
    failed = client_for(staff_user).get(url, {"status": "failed"}, **HTMX).text
    assert "cut.pdf" in failed and "corrupt PDF" in failed and "if.txt" not in failed


def test_the_list_without_htmx_goes_to_the_set_page(staff_user, document_set):
    url = reverse("documents:document-list", args=[document_set.pk])
    response = client_for(staff_user).get(url, {"status": "ready"})
    assert response.status_code == 302
    assert response.url == f"{document_set.get_absolute_url()}?status=ready"


def test_the_list_paginates(staff_user, document_set):
    services.documents_import(
        document_set=document_set,
        incoming=services.incoming_from_uploads(
            [SimpleUploadedFile(f"{i}.txt", f"Note number {i}.".encode()) for i in range(55)]
        ),
    )
    client = client_for(staff_user)
    first = client.get(reverse("documents:set-detail", args=[document_set.pk])).text
    assert first.count('data-status="pending"') == 50 and "Page 1 of 2" in first
    second = client.get(
        reverse("documents:document-list", args=[document_set.pk]), {"page": 2}, **HTMX
    ).text
    assert second.count('data-status="pending"') == 5


def test_the_document_page_shows_text_metadata_and_chunks(user, document, samples):
    page = client_for(user).get(document.get_absolute_url()).text
    assert "Extracted text" in page
    assert "The “if” statement" in page or "The &quot;if&quot; statement" in page
    assert document.sha256 in page
    assert f"about {document.token_estimate} tokens" in page
    assert 'id="chunk-0"' in page
    assert "characters 0–" in page


def test_the_document_page_escapes_document_text(staff_user, document_set):
    report = services.documents_import(
        document_set=document_set,
        incoming=services.incoming_from_uploads(
            [SimpleUploadedFile("x.md", b"Hello <script>alert(1)</script> **bold**")]
        ),
    )
    services.documents_extract(document_ids=report.document_ids)
    document = Document.objects.get()
    page = client_for(staff_user).get(document.get_absolute_url()).text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_chunks_load_page_by_page(staff_user, document_set, samples, settings):
    settings.DOCUMENTS_CHUNK_TOKENS = 60
    text = "\n\n".join(samples.topic(name) for name in ("types", "specialnames"))
    report = services.documents_import(
        document_set=document_set,
        incoming=services.incoming_from_uploads([SimpleUploadedFile("long.txt", text.encode())]),
    )
    services.documents_extract(document_ids=report.document_ids)
    document = Document.objects.get()
    assert document.chunk_count > 80
    client = client_for(staff_user)
    first = client.get(document.get_absolute_url()).text
    assert first.count('class="chunk"') == 40 and "More chunks" in first
    second = client.get(document.get_absolute_url(), {"chunks": 2}, **HTMX).text
    assert 'id="chunk-40"' in second and "<html" not in second


def test_a_pending_document_page_reloads_itself(staff_user, document_set):
    services.documents_import(
        document_set=document_set,
        incoming=services.incoming_from_uploads([SimpleUploadedFile("a.txt", b"Later.")]),
    )
    page = client_for(staff_user).get(Document.objects.get().get_absolute_url()).text
    assert '<meta http-equiv="refresh" content="2">' in page
    assert "Extracting the text" in page


def test_a_failed_document_says_why(staff_user, document_set, samples):
    report = services.documents_import(
        document_set=document_set,
        incoming=services.incoming_from_uploads(
            [SimpleUploadedFile("locked.pdf", samples.pdf(["x"], user_password="pw"))]
        ),
    )
    services.documents_extract(document_ids=report.document_ids)
    page = client_for(staff_user).get(Document.objects.get().get_absolute_url()).text
    assert "encrypted PDF: a password is needed to open it" in page


def test_the_original_downloads_as_an_attachment(user, document, samples):
    response = client_for(user).get(
        reverse("documents:document-original", args=[document.document_set_id, document.pk])
    )
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="if.txt"'
    assert b"".join(response.streaming_content) == samples.topic("if").encode()


def test_admin_pages_load(admin_user, document):
    client = client_for(admin_user)
    for url in (
        reverse("admin:documents_documentset_changelist"),
        reverse("admin:documents_documentset_change", args=[document.document_set_id]),
        reverse("admin:documents_document_changelist"),
        reverse("admin:documents_document_change", args=[document.pk]),
        reverse("admin:documents_chunk_changelist"),
    ):
        assert client.get(url).status_code == 200, url


def test_admin_action_extracts_again(admin_user, document):
    client = client_for(admin_user)
    response = client.post(
        reverse("admin:documents_document_changelist"),
        {"action": "extract_again", "_selected_action": [document.pk]},
        follow=True,
    )
    assert "1 document queued for extraction." in response.text
    document.refresh_from_db()
    assert document.status == Document.Status.PENDING
