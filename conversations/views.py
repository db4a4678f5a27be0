"""Chat pages. Every view finds its conversation through `conversation_visible_to`: anything else
is a 404 (no confirmation that it exists)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from claudeapp.replies import ReplyStatus, reply_snapshot_sync
from conversations import rendering, services
from conversations.forms import ConversationSettingsForm, NewConversationForm, RenameForm
from conversations.models import Conversation, Message
from conversations.selectors import (
    conversation_visible_to,
    message_list_for,
    sidebar_conversations,
)
from documents.selectors import document_visible_to, documentset_visible_to

PAGE = "conversations/conversation_detail.html"


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def _conversation(request: HttpRequest, conversation_id: object) -> Conversation:
    return get_object_or_404(
        conversation_visible_to(request.user).select_related("persona", "document_set"),
        pk=conversation_id,
    )


def _list_page(request: HttpRequest, form: NewConversationForm, status: int = 200) -> HttpResponse:
    return render(
        request,
        "conversations/conversation_list.html",
        {"conversations": sidebar_conversations(request.user), "new_form": form},
        status=status,
    )


def conversation_list(request: HtmxHttpRequest) -> HttpResponse:
    return _list_page(request, NewConversationForm(user=request.user))


@require_POST
def conversation_create(request: HtmxHttpRequest) -> HttpResponse:
    """A new chat; bound to a document set when one is chosen (only a set the user may read:
    the form refuses any other, whatever was posted)."""
    form = NewConversationForm(request.POST, user=request.user)
    if not form.is_valid():
        return _list_page(request, form, status=400)
    conversation = services.conversation_create(
        owner=request.user, document_set=form.cleaned_data["document_set"]
    )
    return redirect("conversations:detail", conversation_id=conversation.pk)


def _set_readable(request: HttpRequest, conversation: Conversation) -> bool:
    """Whether the owner may still read the set the conversation is bound to (bound only)."""
    return (
        conversation.document_set_id is None
        or documentset_visible_to(request.user).filter(pk=conversation.document_set_id).exists()
    )


def _message_items(conversation: Conversation) -> list[dict]:
    items = list(message_list_for(conversation))
    start = conversation.history_start
    rendered = []
    for index, message in enumerate(items):
        snapshot = None
        if message.status == ReplyStatus.STREAMING:
            snapshot = reply_snapshot_sync(message.reply_key)
        context = rendering.message_context(
            message, is_last=index == len(items) - 1, snapshot=snapshot
        )
        context["left_out"] = start is not None and message.created_at < start
        rendered.append(context)
    return rendered


def conversation_detail(request: HtmxHttpRequest, conversation_id: object) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    items = _message_items(conversation)
    active = next((i["message"].pk for i in items if i["streaming"]), None)
    form = ConversationSettingsForm(instance=conversation, user=request.user)
    return render(
        request,
        PAGE,
        {
            "conversation": conversation,
            "conversations": sidebar_conversations(request.user),
            "items": items,
            "active_message_id": active,
            "total_cost": rendering.format_cost(conversation.total_cost_usd),
            "trimmed": conversation.history_start is not None,
            "turns_left_out": sum(1 for i in items if i["left_out"] and i["message"].is_user),
            "form": form,
            "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
            "set_readable": _set_readable(request, conversation),
        },
    )


@require_http_methods(["GET", "POST"])
def conversation_rename(request: HtmxHttpRequest, conversation_id: object) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    if request.method == "POST":
        form = RenameForm(request.POST)
        if form.is_valid():
            services.conversation_rename(
                conversation=conversation, title=form.cleaned_data["title"]
            )
        if not request.htmx:
            return redirect("conversations:detail", conversation_id=conversation.pk)
        return render(request, f"{PAGE}#conversation-title", {"conversation": conversation})
    form = RenameForm(initial={"title": conversation.title})
    return render(request, f"{PAGE}#title-form", {"conversation": conversation, "form": form})


@require_http_methods(["GET", "POST"])
def conversation_settings(request: HtmxHttpRequest, conversation_id: object) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    saved = False
    if request.method == "POST":
        form = ConversationSettingsForm(request.POST, instance=conversation, user=request.user)
        if form.is_valid():
            conversation = form.save()
            services.conversation_settings_saved(conversation=conversation)
            saved = True
            form = ConversationSettingsForm(instance=conversation, user=request.user)
            if not request.htmx:
                messages.success(request, "Settings saved.")
                return redirect("conversations:detail", conversation_id=conversation.pk)
    else:
        # The model picker re-renders the form for the model being considered.
        form = ConversationSettingsForm(
            instance=conversation, user=request.user, model_id=request.GET.get("model_id") or None
        )
        if request.GET.get("model_id"):
            form.initial["model_id"] = request.GET["model_id"]
    template = (
        f"{PAGE}#settings-form" if request.htmx else "conversations/conversation_settings.html"
    )
    return render(request, template, {"conversation": conversation, "form": form, "saved": saved})


@require_http_methods(["GET", "POST"])
def conversation_delete(request: HtmxHttpRequest, conversation_id: object) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    if request.method == "POST":
        title = conversation.display_title
        services.conversation_delete(conversation=conversation)
        messages.success(request, f"Deleted “{title}”.")
        return redirect("conversations:list")
    return render(
        request, "conversations/conversation_confirm_delete.html", {"conversation": conversation}
    )


@require_GET
def message_citation(
    request: HttpRequest, conversation_id: object, message_id: object, n: int
) -> HttpResponse:
    """A passage a reply cites, highlighted in its document (RAG's passage page). The reader
    must own the conversation and still be able to read the document's set: else a 404."""
    from documents.rag.views import passage_page

    conversation = _conversation(request, conversation_id)
    message = get_object_or_404(
        Message.objects.only("id", "conversation_id", "citations"),
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        pk=message_id,
    )
    return passage_page(
        request,
        n=n,
        passages=message.citations or [],
        documents=document_visible_to(request.user),
        citation_url=lambda m: rendering.citation_url(message, m),
        crumbs=[
            (reverse("conversations:list"), "Chat"),
            (reverse("conversations:detail", args=[conversation.pk]), conversation.display_title),
        ],
        cited_in=f"Cited in a reply in “{conversation.display_title}”",
    )
