"""Document set pages. Every view finds its set through `documentset_visible_to` (or the managed
subset for staff actions), so anyone else gets a 404, never a 403."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.middleware import HtmxDetails

from documents import selectors, services
from documents.forms import DocumentSetForm, UploadOptionsForm
from documents.models import Document, DocumentSet
from documents.uploads import CappedUploadHandler

DOCUMENTS_PER_PAGE = 50
CHUNKS_PER_PAGE = 40
TEXT_PREVIEW_CHARS = 100_000


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _visible_set(request: HttpRequest, pk: int) -> DocumentSet:
    return get_object_or_404(selectors.documentset_visible_to(request.user), pk=pk)


def _managed_set(request: HttpRequest, pk: int) -> DocumentSet:
    return get_object_or_404(selectors.documentset_managed_by(request.user), pk=pk)


def _require_manager(request: HttpRequest) -> None:
    if not selectors.user_manages_documents(request.user):
        raise Http404


def _only_get(request: HttpRequest) -> HttpResponse | None:
    # Checked after the set lookup, so that a stranger's POST is a 404 like everything else.
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    return None


@require_GET
def set_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "documents/set_list.html",
        {
            "document_sets": selectors.documentset_list(user=request.user),
            "can_manage": selectors.user_manages_documents(request.user),
        },
    )


@require_http_methods(["GET", "POST"])
def set_create(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    form = DocumentSetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        document_set = services.documentset_create(
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            owner=request.user,
            members=form.cleaned_data["members"],
            member_groups=form.cleaned_data["member_groups"],
        )
        messages.success(request, f"Created “{document_set.name}”. Add documents below.")
        return redirect(document_set)
    return render(request, "documents/set_form.html", {"form": form, "document_set": None})


@require_http_methods(["GET", "POST"])
def set_edit(request: HttpRequest, pk: int) -> HttpResponse:
    document_set = _managed_set(request, pk)
    form = DocumentSetForm(request.POST or None, instance=document_set)
    if request.method == "POST" and form.is_valid():
        services.documentset_update(
            document_set=document_set,
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            members=form.cleaned_data["members"],
            member_groups=form.cleaned_data["member_groups"],
        )
        messages.success(request, "Saved.")
        return redirect(document_set)
    return render(request, "documents/set_form.html", {"form": form, "document_set": document_set})


@require_http_methods(["GET", "POST"])
def set_delete(request: HttpRequest, pk: int) -> HttpResponse:
    document_set = _managed_set(request, pk)
    if request.method == "POST":
        name = document_set.name
        services.documentset_delete(document_set=document_set)
        messages.success(request, f"Deleted “{name}” and its documents.")
        return redirect("documents:set-list")
    counts = selectors.document_status_counts(document_set=document_set)
    return render(
        request,
        "documents/set_confirm_delete.html",
        {"document_set": document_set, "counts": counts},
    )


def _list_context(request: HttpRequest, document_set: DocumentSet) -> dict[str, object]:
    status = request.GET.get("status") or ""
    if status not in Document.Status.values:
        status = ""
    counts = selectors.document_status_counts(document_set=document_set)
    paginator = Paginator(
        selectors.document_list(document_set=document_set, status=status or None),
        DOCUMENTS_PER_PAGE,
    )
    # The status counts already say how many there are: spare the poll a COUNT(*).
    paginator.count = counts[status or "total"]
    page = paginator.get_page(request.GET.get("page"))
    query = {key: value for key, value in (("status", status), ("page", page.number)) if value}
    list_url = reverse("documents:document-list", args=[document_set.pk])
    return {
        "document_set": document_set,
        "page": page,
        "counts": counts,
        "status": status,
        "list_url": f"{list_url}?{urlencode(query)}" if query else list_url,
        "base_list_url": list_url,
        "status_filters": [("", "All", counts["total"])]
        + [(value, label, counts[value]) for value, label in Document.Status.choices],
        "can_manage": selectors.user_manages_documents(request.user),
    }


def set_detail(request: HttpRequest, pk: int) -> HttpResponse:
    document_set = _visible_set(request, pk)
    if refused := _only_get(request):
        return refused
    context = _list_context(request, document_set)
    context.update(
        {
            "upload_form": UploadOptionsForm(),
            "max_file_size": settings.DOCUMENTS_MAX_FILE_SIZE,
            "files_per_request": settings.DOCUMENTS_UPLOAD_FILES_PER_REQUEST,
            "bytes_per_request": settings.DOCUMENTS_UPLOAD_BYTES_PER_REQUEST,
            "members": document_set.members.order_by("username"),
            "member_groups": document_set.member_groups.order_by("name"),
        }
    )
    return render(request, "documents/set_detail.html", context)


def document_list(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The live list (polled while documents are pending); a full page without htmx."""
    document_set = _visible_set(request, pk)
    if refused := _only_get(request):
        return refused
    if not request.htmx:
        return redirect(f"{document_set.get_absolute_url()}?{request.GET.urlencode()}")
    return render(
        request,
        "documents/set_detail.html#document-list",
        _list_context(request, document_set),
    )


@csrf_exempt
def upload(request: HttpRequest, pk: int) -> HttpResponse:
    # Upload handlers can only change before the body is read, and the CSRF check reads it:
    # hence the exemption here and the protection on the real view.
    request.upload_handlers.insert(0, CappedUploadHandler(request))
    return _upload(request, pk)


@csrf_protect
def _upload(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    document_set = _managed_set(request, pk)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    options = UploadOptionsForm(request.POST)
    csv_rows = options.is_valid() and options.cleaned_data["csv_rows"]
    files = request.FILES.getlist("files")
    report = services.documents_import(
        document_set=document_set,
        incoming=services.incoming_from_uploads(files),
        csv_rows=csv_rows,
    )
    if request.htmx:
        response = render(
            request,
            "documents/set_detail.html#upload-result",
            {"report": report, "offered": len(files)},
        )
        response["HX-Trigger"] = "documents:uploaded"
        return response
    if not files:
        messages.error(request, "Choose at least one file.")
    else:
        summary = f"{report.imported} uploaded"
        if report.duplicates:
            summary += f", {len(report.duplicates)} duplicates skipped"
        if report.failures:
            refused = "; ".join(f"{f.name}: {f.reason}" for f in report.failures[:5])
            messages.error(request, f"{summary}, {len(report.failures)} refused: {refused}")
        else:
            messages.success(request, f"{summary}.")
    return redirect(document_set)


def _visible_document(request: HttpRequest, pk: int, document_pk: int) -> Document:
    document_set = _visible_set(request, pk)
    return get_object_or_404(
        Document.objects.select_related("document_set"), document_set=document_set, pk=document_pk
    )


_METADATA_LABELS = {
    "title": "Title",
    "encoding": "Encoding",
    "csv_rows": "Rows",
    "csv_columns": "Columns",
}


def _metadata_rows(metadata: dict) -> list[tuple[str, str]]:
    rows = []
    for key, value in metadata.items():
        if key in ("pages", "page_count"):
            continue
        label = _METADATA_LABELS.get(key, key.replace("_", " ").capitalize())
        rows.append((label, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    return rows


def document_detail(request: HtmxHttpRequest, pk: int, document_pk: int) -> HttpResponse:
    document = _visible_document(request, pk, document_pk)
    if refused := _only_get(request):
        return refused
    chunks = Paginator(selectors.chunk_list(document=document), CHUNKS_PER_PAGE).get_page(
        request.GET.get("chunks")
    )
    context = {
        "document_set": document.document_set,
        "document": document,
        "chunks": chunks,
        "text_preview": document.text[:TEXT_PREVIEW_CHARS],
        "text_truncated": len(document.text) > TEXT_PREVIEW_CHARS,
        "text_length": len(document.text),
        "metadata_rows": _metadata_rows(document.metadata),
    }
    if request.htmx and request.GET.get("chunks"):
        return render(request, "documents/document_detail.html#chunk-page", context)
    return render(request, "documents/document_detail.html", context)


def document_original(request: HttpRequest, pk: int, document_pk: int) -> HttpResponseBase:
    """The file as uploaded, always as a download (never rendered by the browser)."""
    document = _visible_document(request, pk, document_pk)
    if refused := _only_get(request):
        return refused
    if not document.file:
        raise Http404
    try:
        fileobj = default_storage.open(document.file.name, "rb")
    except OSError:
        raise Http404 from None
    return FileResponse(
        fileobj,
        as_attachment=True,
        filename=document.filename.rsplit("/", 1)[-1],
        content_type="application/octet-stream",
    )
