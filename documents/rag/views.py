"""Ask pages. Every view finds the set through `documentset_visible_to` and the question through
`ragquery_visible_to`, so anyone else gets a 404, never a 403."""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import Truncator
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from documents.models import Document, DocumentSet
from documents.rag import selectors, services
from documents.rag.forms import AskForm
from documents.rag.models import RagQuery
from documents.selectors import documentset_visible_to

HISTORY = 50
BOX_HISTORY = 3
PASSAGE_CONTEXT_CHARS = 6000  # shown around a cited passage


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _visible_set(request: HttpRequest, pk: int) -> DocumentSet:
    return get_object_or_404(documentset_visible_to(request.user), pk=pk)


def _visible_query(request: HttpRequest, document_set: DocumentSet, query_pk: int) -> RagQuery:
    return get_object_or_404(
        selectors.ragquery_visible_to(request.user), document_set=document_set, pk=query_pk
    )


def _page_context(request: HttpRequest, document_set: DocumentSet, form: AskForm) -> dict:
    return {
        "document_set": document_set,
        "form": form,
        "history": selectors.ragquery_history(
            document_set=document_set, user=request.user, limit=HISTORY
        ),
        "cache": selectors.set_cache_status(
            document_set=document_set, model_id=services.rag_model_id()
        ),
    }


@require_http_methods(["GET", "POST"])
def ask(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The set's questions and answers; POST asks a new one (its answer streams into the page)."""
    document_set = _visible_set(request, pk)
    form = AskForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                query = services.ragquery_ask(
                    document_set=document_set,
                    user=request.user,
                    question=form.cleaned_data["question"],
                )
            except services.RagError as error:
                form.add_error("question", error.user_message)
            else:
                if request.htmx:
                    return render(
                        request,
                        "rag/ask.html#asked",
                        {"document_set": document_set, "query": query, "form": AskForm()},
                    )
                return redirect("documents:rag-ask", pk=document_set.pk)
        if request.htmx:
            response = render(
                request, "rag/ask.html#ask-form", {"document_set": document_set, "form": form}
            )
            response["HX-Retarget"] = "#rag-ask-form"
            response["HX-Reswap"] = "outerHTML"
            return response
    return render(request, "rag/ask.html", _page_context(request, document_set, form))


@require_GET
def ask_box(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The Ask box of the set page (loaded by htmx): the form, the latest questions, the cache."""
    document_set = _visible_set(request, pk)
    context = _page_context(request, document_set, AskForm())
    context["history"] = context["history"][:BOX_HISTORY]
    context["box"] = True
    return render(request, "rag/ask.html#ask-box", context)


@require_GET
def answer(request: HtmxHttpRequest, pk: int, query_pk: int) -> HttpResponse:
    document_set = _visible_set(request, pk)
    query = _visible_query(request, document_set, query_pk)
    if request.htmx:
        return render(request, "rag/_answer.html", {"query": query})
    return render(request, "rag/answer.html", {"document_set": document_set, "query": query})


@require_POST
def stop(request: HtmxHttpRequest, pk: int, query_pk: int) -> HttpResponse:
    """Stop without a socket (the page's Stop button goes over the socket)."""
    document_set = _visible_set(request, pk)
    query = _visible_query(request, document_set, query_pk)
    services.ragquery_stop(query=query)
    if request.htmx:
        query.refresh_from_db()
        return render(request, "rag/_answer.html", {"query": query})
    return redirect(query)


@require_GET
def citation(request: HttpRequest, pk: int, query_pk: int, n: int) -> HttpResponse:
    """The passage an answer cites, highlighted in its document's text."""
    document_set = _visible_set(request, pk)
    query = _visible_query(request, document_set, query_pk)
    crumbs = [
        (reverse("documents:set-list"), "Document sets"),
        (document_set.get_absolute_url(), document_set.name),
        (query.get_absolute_url(), "Answer"),
    ]
    return passage_page(
        request,
        n=n,
        passages=query.citations or [],
        documents=Document.objects.filter(document_set=document_set),
        citation_url=lambda m: reverse("documents:rag-citation", args=[pk, query_pk, m]),
        crumbs=crumbs,
        cited_in=f"Cited in the answer to “{Truncator(query.question).chars(140)}”",
    )


def passage_page(
    request: HttpRequest,
    *,
    n: int,
    passages: list[dict],
    documents: QuerySet[Document],
    citation_url: Callable[[int], str],
    crumbs: list[tuple[str, str]],
    cited_in: str,
) -> HttpResponse:
    """Passage `n` of a reply's numbered `passages`, highlighted in its document's text, with
    links to the others; 404 when there is no such passage or its document is not among
    `documents` (the ones the reader may see there). Chat replies in a conversation bound to a
    set use it too."""
    passage = next((c for c in passages if c.get("n") == n), None)
    if passage is None:
        return render(request, "rag/citation.html", {"crumbs": crumbs, "missing": True}, status=404)
    document = get_object_or_404(
        documents.only("id", "filename", "text", "document_set_id", "metadata"),
        pk=passage["document"],
    )
    text = document.text
    start, end = max(0, passage["start"]), min(len(text), passage["end"])
    window_start = max(0, start - PASSAGE_CONTEXT_CHARS)
    window_end = min(len(text), end + PASSAGE_CONTEXT_CHARS)
    # Start and end the window on a line break where there is one nearby, for a tidy view.
    if window_start > 0:
        cut = text.rfind("\n", window_start - 400, window_start)
        window_start = cut + 1 if cut >= 0 else window_start
    if window_end < len(text):
        cut = text.find("\n", window_end, window_end + 400)
        window_end = cut if cut >= 0 else window_end
    return render(
        request,
        "rag/citation.html",
        {
            "crumbs": crumbs,
            "cited_in": cited_in,
            "document": document,
            "passage": passage,
            "before": text[window_start:start],
            "cited": text[start:end],
            "after": text[end:window_end],
            "window_start": window_start,
            "window_end": window_end,
            "text_length": len(text),
            "others": [
                {**c, "url": citation_url(c["n"])} for c in passages if c["n"] != passage["n"]
            ],
        },
    )
