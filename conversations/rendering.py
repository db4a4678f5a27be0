"""HTML for messages and the fragments sockets send (no database access: callers pass data in).

Pages and sockets render messages through the same partials of ``conversation_detail.html``,
so a reply looks the same streamed, stored, reloaded or swept.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.template.loader import render_to_string
from django.urls import reverse

from claudeapp.replies import ReplyStatus, Snapshot
from conversations.markdown import RENDER_VERSION, render_markdown, render_plain
from conversations.models import Conversation, Message

PAGE = "conversations/conversation_detail.html"

STATUS_NOTICES = {
    ReplyStatus.STOPPED: "Stopped. The reply above is incomplete.",
    ReplyStatus.TRUNCATED: "The reply reached its length limit and is incomplete.",
    ReplyStatus.REFUSED: "Claude declined to answer this request.",
}


def message_body_html(message: Message) -> str:
    """The stored render when current, else a fresh one (sanitized)."""
    if message.is_user:
        return render_plain(message.text)
    if message.html and message.html_version == RENDER_VERSION:
        return message.html
    if message.citations and message.sources:
        from documents.rag.citations import stored_numbers

        blocks = message.all_blocks
        return cited_reply_html(message, stored_numbers(blocks, message.sources, message.citations))
    return render_markdown(message.text)


def citation_url(message: Message, n: int) -> str:
    return reverse("conversations:citation", args=[message.conversation_id, message.pk, n])


def cited_reply_html(message: Message, numbers: list[list[int]]) -> str:
    """A reply that cites a bound set's documents: RAG's rendering (sanitized Markdown, then
    numbered markers), each marker opening the passage through this conversation."""
    from documents.rag.rendering import cited_html

    return cited_html(
        blocks=message.all_blocks,
        numbers=numbers,
        citation_url=lambda n: citation_url(message, n),
    )


def format_cost(value: Decimal | None) -> str:
    if value is None:
        return ""
    if value == 0:
        return "$0"
    if value < Decimal("0.01"):
        return f"${value:.4f}"
    return f"${value:.2f}" if value >= 1 else f"${value:.3f}"


def format_tokens(value: int) -> str:
    if value >= 10_000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:,}"


def format_ms(value: int | None) -> str:
    if value is None:
        return ""
    if value < 1000:
        return f"{value} ms"
    return f"{value / 1000:.1f} s"


def message_context(
    message: Message, *, is_last: bool = True, snapshot: Snapshot | None = None
) -> dict[str, Any]:
    status = message.status
    streaming = not message.is_user and status == ReplyStatus.STREAMING
    blocks, tail, thinking = "", "", message.thinking_text
    if streaming and snapshot is not None:
        blocks, tail, thinking = snapshot.blocks, snapshot.tail, snapshot.thinking
    elif streaming and message.text:
        blocks = render_markdown(message.text)  # a continuation's earlier parts
    body = "" if streaming else message_body_html(message)
    footer = []
    if not message.is_user and not streaming and message.model_id:
        footer = [message.model_id]
        if message.prompt_tokens or message.output_tokens:
            footer.append(f"{format_tokens(message.input_tokens + message.cache_write_tokens)} in")
            if message.cache_read_tokens:
                footer.append(f"{format_tokens(message.cache_read_tokens)} cached")
            footer.append(f"{format_tokens(message.output_tokens)} out")
        if message.cost_usd:
            footer.append(format_cost(message.cost_usd))
        if message.ttft_ms is not None:
            footer.append(f"first token {format_ms(message.ttft_ms)}")
        if message.duration_ms is not None:
            footer.append(format_ms(message.duration_ms))
    return {
        "message": message,
        "dom": message.reply_dom_id,
        "status": status,
        "streaming": streaming,
        "body": body,
        "stream_blocks": blocks,
        "stream_tail": tail,
        "thinking": thinking,
        "redacted_thinking": message.has_redacted_thinking,
        "notice": message.error if status == ReplyStatus.FAILED else STATUS_NOTICES.get(status, ""),
        "continue_error": message.error if status == ReplyStatus.TRUNCATED else "",
        "footer": footer,
        "is_last": is_last,
    }


def render_message(
    message: Message, *, is_last: bool = True, snapshot: Snapshot | None = None, oob: str = ""
) -> str:
    context = message_context(message, is_last=is_last, snapshot=snapshot)
    context["oob"] = oob
    return render_to_string(f"{PAGE}#message", context)


def render_actions(message: Message, *, is_last: bool) -> str:
    """Only the action bar of an assistant message (e.g. it is no longer the last one)."""
    context = message_context(message, is_last=is_last)
    context["actions_oob"] = True
    return render_to_string(f"{PAGE}#message-actions", context)


def render_composer_actions(active_message_id: object | None) -> str:
    return render_to_string(
        f"{PAGE}#composer-actions", {"active_message_id": active_message_id, "oob": True}
    )


def render_composer_error(text: str) -> str:
    return render_to_string(f"{PAGE}#composer-error", {"error": text, "oob": True})


def render_cost(conversation_id: object, total: Decimal) -> str:
    return render_to_string(
        f"{PAGE}#conversation-cost",
        {"conversation_id": conversation_id, "total_cost": format_cost(total), "oob": True},
    )


def render_trim_notice(*, trimmed: bool, turns_left_out: int = 0) -> str:
    return render_to_string(
        f"{PAGE}#trim-notice",
        {"trimmed": trimmed, "turns_left_out": turns_left_out, "oob": True},
    )


def render_title(conversation: Conversation) -> str:
    return render_to_string(
        f"{PAGE}#conversation-title", {"conversation": conversation, "oob": True}
    ) + render_to_string(
        "conversations/_sidebar.html#conversation-link",
        {"item": conversation, "current_id": conversation.pk, "oob": True},
    )


def render_meta(conversation: Conversation, *, set_readable: bool = True) -> str:
    """The header's settings chip and the bound set's link (both swapped out of band)."""
    context = {"conversation": conversation, "set_readable": set_readable, "oob": True}
    return render_to_string(f"{PAGE}#conversation-meta", context) + render_to_string(
        f"{PAGE}#conversation-set", context
    )


def render_reply_done(message: Message) -> str:
    """The fragment that ends a reply on every open page: the stored message, Send again."""
    return render_message(message, is_last=True, oob="true") + render_composer_actions(None)


def render_new_turn(user_message: Message | None, assistant: Message, *, replace: bool) -> str:
    """A reply starting: the user's message and the streaming placeholder, Stop offered."""
    parts = []
    if replace:
        parts.append(render_message(assistant, oob="true"))
    else:
        items = ""
        if user_message is not None:
            items += render_message(user_message)
        items += render_message(assistant)
        parts.append(f'<div hx-swap-oob="beforeend:#message-list">{items}</div>')
        parts.append('<div id="empty-state" hx-swap-oob="delete"></div>')
    parts.append(render_composer_actions(assistant.pk))
    parts.append(render_composer_error(""))
    return "".join(parts)
