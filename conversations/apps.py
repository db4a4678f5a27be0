from __future__ import annotations

from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "conversations"

    def ready(self) -> None:
        from django.db import transaction
        from django.db.models.signals import post_delete, post_save

        from conversations.models import Conversation, Message

        def changed(sender, instance, **kwargs) -> None:  # noqa: ANN001
            """A saved row (admin, a shell) makes web processes re-read the conversation
            before its next reply; the services' own bulk updates count their changes."""
            from conversations.services import conversation_changed

            conversation_id = instance.pk if sender is Conversation else instance.conversation_id
            transaction.on_commit(lambda: conversation_changed(conversation_id), robust=True)

        for model in (Conversation, Message):
            post_save.connect(changed, sender=model, dispatch_uid=f"chat-changed-{model.__name__}")
            post_delete.connect(changed, sender=model, dispatch_uid=f"chat-gone-{model.__name__}")
