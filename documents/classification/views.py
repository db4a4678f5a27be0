"""Classification job pages (staff only). Every view finds its job through
`classificationjob_visible_to`, so anyone else gets a 404, never a 403."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from documents.classification import selectors, services
from documents.classification.forms import JobForm
from documents.classification.models import ClassificationJob, ClassificationResult
from documents.classification.prompts import EXTRA_FIELD_LABELS
from documents.selectors import documentset_managed_by, user_manages_documents

RESULTS_PER_PAGE = 50
TEXT_PREVIEW_CHARS = 100_000
TEMPLATE = "documents/classification/job_detail.html"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _require_manager(request: HttpRequest) -> None:
    if not user_manages_documents(request.user):
        raise Http404


def _job(request: HttpRequest, pk: int) -> ClassificationJob:
    return get_object_or_404(
        selectors.classificationjob_visible_to(request.user).select_related(
            "document_set", "created_by"
        ),
        pk=pk,
    )


@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    jobs = Paginator(selectors.classificationjob_list(user=request.user), 50).get_page(
        request.GET.get("page")
    )
    return render(request, "documents/classification/job_list.html", {"jobs": jobs})


def _confirmation(kwargs: dict[str, Any], documents: int) -> str:
    """A digest of what the estimate was for: starting needs the estimate of these inputs."""
    canonical = {**kwargs, "document_set": kwargs["document_set"].pk, "documents": documents}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:32]


@require_http_methods(["GET", "POST"])
def job_create(request: HttpRequest) -> HttpResponse:
    """The new-job form: "Estimate" shows tokens and cost; "Start" (offered with the estimate)
    creates the job, unless the inputs changed since, when the new estimate is shown first."""
    _require_manager(request)
    initial = {}
    if set_pk := request.GET.get("set"):
        managed = documentset_managed_by(request.user).filter(pk=set_pk).first()
        if managed:
            initial["document_set"] = managed
    form = JobForm(request.POST or None, user=request.user, initial=initial)
    estimate = None
    confirmation = ""
    if request.method == "POST" and form.is_valid():
        kwargs = form.job_kwargs()
        try:
            estimate = services.classification_job_estimate(**kwargs)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            confirmation = _confirmation(kwargs, estimate.documents)
            wants_start = request.POST.get("action") == "start"
            if wants_start and request.POST.get("confirmation") == confirmation:
                try:
                    job = services.classification_job_create(created_by=request.user, **kwargs)
                except ValidationError as error:
                    form.add_error(None, error)
                else:
                    messages.success(request, f"Job {job.pk} started.")
                    return redirect(job)
            elif wants_start:
                messages.warning(request, "The job changed since its estimate: check it again.")
    return render(
        request,
        "documents/classification/job_form.html",
        {"form": form, "estimate": estimate, "confirmation": confirmation},
    )


def _status_context(job: ClassificationJob) -> dict[str, Any]:
    progress = selectors.classification_job_progress(job=job)
    labels = selectors.classification_label_counts(job=job)
    cost = selectors.classification_job_cost(job=job)
    estimate = job.estimated_cost_usd
    return {
        "job": job,
        "progress": progress,
        "cost": cost,
        "cost_percent": min(100, int(100 * cost / estimate)) if estimate else 0,
        "label_counts": labels,
        "chart": {"labels": [name for name, _ in labels], "counts": [n for _, n in labels]},
        # The live panel carries the counts in an attribute: htmx drops <script> elements
        # (json_script included) from swapped content when allowScriptTags is off.
        "chart_counts": json.dumps([n for _, n in labels]),
        "batches": selectors.classification_batches(job=job),
    }


def _results_context(request: HttpRequest, job: ClassificationJob) -> dict[str, Any]:
    label = request.GET.get("label", "")
    if label not in job.label_names:
        label = ""
    outcome = request.GET.get("outcome", "")
    if outcome not in ClassificationResult.Outcome.values:
        outcome = ""
    search = request.GET.get("q", "")[:200]
    results = selectors.classification_result_list(
        job=job, label=label, outcome=outcome, search=search
    )
    page = Paginator(results, RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    query = {k: v for k, v in (("label", label), ("outcome", outcome), ("q", search)) if v}
    return {
        "job": job,
        "page": page,
        "label": label,
        "outcome": outcome,
        "search": search,
        "query": urlencode(query),
        "results_url": reverse("documents:job-results", args=[job.pk]),
        "outcomes": ClassificationResult.Outcome.choices,
        "extra_labels": EXTRA_FIELD_LABELS,
    }


@require_GET
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = _job(request, pk)
    context = {**_status_context(job), **_results_context(request, job)}
    return render(request, TEMPLATE, context)


@require_GET
def job_status(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The status panel alone (polled while the job runs)."""
    job = _job(request, pk)
    context = _status_context(job)
    response = render(request, f"{TEMPLATE}#job-status", context)
    if request.GET.get("done") != str(context["progress"].done):
        response["HX-Trigger"] = "jobs:progress"  # the results table reloads itself
    return response


@require_GET
def job_results(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The results table alone (filters, search, pages); a full page without htmx."""
    job = _job(request, pk)
    if not request.htmx:
        return redirect(f"{job.get_absolute_url()}?{request.GET.urlencode()}#results")
    return render(request, f"{TEMPLATE}#result-rows", _results_context(request, job))


@require_GET
def job_result(request: HttpRequest, pk: int, document_pk: int) -> HttpResponse:
    """One document's result: its label, rationale and key phrases beside its text."""
    job = _job(request, pk)
    result = get_object_or_404(
        ClassificationResult.objects.select_related("document", "answered_by"),
        job=job,
        document_id=document_pk,
    )
    text = result.document.text
    return render(
        request,
        "documents/classification/result_detail.html",
        {
            "job": job,
            "result": result,
            "document": result.document,
            "text_preview": text[:TEXT_PREVIEW_CHARS],
            "text_truncated": len(text) > TEXT_PREVIEW_CHARS,
        },
    )


@require_POST
def job_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    job = _job(request, pk)
    if services.classification_job_cancel(job=job):
        messages.success(request, f"Canceling job {job.pk}: answers received so far are kept.")
    else:
        messages.info(request, f"Job {job.pk} had already finished.")
    if request.htmx:
        return render(request, f"{TEMPLATE}#job-status", _status_context(job))
    return redirect(job)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(job: ClassificationJob) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(selectors.EXPORT_FIELDS)
    for row in selectors.classification_export_rows(job=job):
        row["key_phrases"] = "; ".join(row["key_phrases"] or [])
        yield writer.writerow([_csv_safe(row[f]) for f in selectors.EXPORT_FIELDS])


def _csv_safe(value: Any) -> Any:
    # Spreadsheets run cells that start with = + - @ as formulas; model output is untrusted.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _jsonl_lines(job: ClassificationJob) -> Iterator[str]:
    for row in selectors.classification_export_rows(job=job):
        yield json.dumps(row, ensure_ascii=False) + "\n"


@require_GET
def job_export(request: HttpRequest, pk: int, fmt: str) -> StreamingHttpResponse:
    job = _job(request, pk)
    if fmt == "csv":
        lines, content_type = _csv_lines(job), "text/csv; charset=utf-8"
    elif fmt == "jsonl":
        lines, content_type = _jsonl_lines(job), "application/x-ndjson; charset=utf-8"
    else:
        raise Http404
    response = StreamingHttpResponse(lines, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-results.{fmt}"'
    return response
