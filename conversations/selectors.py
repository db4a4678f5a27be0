"""Reads. The one rule for who sees a conversation lives here; every view, socket and task
uses it."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from conversations.models import Conversation, Message, Persona


def conversation_visible_to(user) -> QuerySet[Conversation]:  # noqa: ANN001 - a User or AnonymousUser
    """Conversations ``user`` may see: their own. Staff see nothing extra here."""
    if user is None or not user.is_authenticated:
        return Conversation.objects.none()
    return Conversation.objects.filter(owner_id=user.pk)


def conversation_list_for(user) -> QuerySet[Conversation]:  # noqa: ANN001
    """The sidebar: newest activity first."""
    return conversation_visible_to(user).only("id", "title", "updated_at").order_by("-updated_at")


def message_list_for(conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.order_by("created_at", "id")


def message_visible_to(user, message_id: object) -> QuerySet[Message]:  # noqa: ANN001
    return Message.objects.filter(pk=message_id, conversation__in=conversation_visible_to(user))


def persona_choices() -> QuerySet[Persona]:
    return Persona.objects.filter(is_active=True).order_by("sort_order", "name")


def default_persona() -> Persona | None:
    return Persona.objects.filter(is_active=True, is_default=True).first()


def _age_group(updated_at, today) -> str:  # noqa: ANN001
    days = (today - timezone.localtime(updated_at).date()).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    if days <= 7:
        return "Previous 7 days"
    if days <= 30:
        return "Previous 30 days"
    return "Older"


def _age_label(updated_at, now) -> str:  # noqa: ANN001
    seconds = (now - updated_at).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return timezone.localtime(updated_at).strftime("%d %b %Y").lstrip("0")


def sidebar_conversations(user, limit: int = 200) -> list[Conversation]:  # noqa: ANN001
    """The list, newest first, each tagged with its `age_group` heading and `age_label`."""
    now = timezone.now()
    today = timezone.localdate()
    items = list(conversation_list_for(user)[:limit])
    for item in items:
        item.age_group = _age_group(item.updated_at, today)
        item.age_label = _age_label(item.updated_at, now)
    return items
