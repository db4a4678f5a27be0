"""The chat pages: list, new, rename, settings (what the registry allows), delete, trim notice."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_home_is_the_conversation_list(client, user):
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/chat/"


def test_the_list_shows_conversations_newest_first(client, user, make_conversation):
    old = make_conversation(title="Older one")
    new = make_conversation(title="Newer one")
    old.updated_at = timezone.now() - dt.timedelta(days=3)
    old.save()
    client.force_login(user)
    page = client.get("/chat/").content.decode()
    assert page.index("Newer one") < page.index("Older one")
    assert "Previous 7 days" in page and "Today" in page
    assert f"/chat/{new.pk}/" in page


def test_new_chat_uses_the_default_persona_and_the_chat_route(client, user):
    from conversations.models import Conversation

    client.force_login(user)
    response = client.post("/chat/new/")
    conversation = Conversation.objects.get(owner=user)
    assert response["Location"] == f"/chat/{conversation.pk}/"
    assert conversation.model_id == "claude-sonnet-5-5"
    assert conversation.persona is not None and conversation.persona.is_default
    page = client.get(response["Location"]).content.decode()
    assert 'form id="composer"' in page and 'name="content"' in page
    assert f'ws-connect="/ws/chat/{conversation.pk}/"' in page


def test_rename_over_htmx(client, user, make_conversation):
    conversation = make_conversation()
    client.force_login(user)
    form = client.get(f"/chat/{conversation.pk}/rename/", headers={"HX-Request": "true"})
    assert 'name="title"' in form.content.decode()
    response = client.post(
        f"/chat/{conversation.pk}/rename/", {"title": "  Trip planning  "},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert "Trip planning" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Trip planning"


def test_delete_asks_first_then_deletes_everything(client, user, make_conversation):
    from conversations.models import Message

    conversation = make_conversation(title="To be deleted")
    Message.objects.create(conversation=conversation, role="user", content=[])
    client.force_login(user)
    confirm = client.get(f"/chat/{conversation.pk}/delete/")
    assert "cannot be undone" in confirm.content.decode()
    assert conversation.__class__.objects.filter(pk=conversation.pk).exists()
    response = client.post(f"/chat/{conversation.pk}/delete/")
    assert response["Location"] == "/chat/"
    assert not conversation.__class__.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("model_id", "shows", "hides"),
    [
        ("claude-sonnet-5-5", ["Effort", "always on"], ["Temperature", "Thinking budget"]),
        ("claude-haiku-4-5", ["Temperature", "Thinking budget", "Extended thinking"], ["Effort"]),
        ("claude-haiku-5-5", ["Effort", "Extended thinking"], ["Temperature"]),
    ],
)
def test_settings_offer_only_what_the_model_accepts(
    client, user, make_conversation, model_id, shows, hides
):
    conversation = make_conversation()
    client.force_login(user)
    page = client.get(
        f"/chat/{conversation.pk}/settings/", {"model_id": model_id}, headers={"HX-Request": "true"}
    ).content.decode()
    for text in shows:
        assert text in page, text
    for text in hides:
        assert text not in page, text


def test_settings_save_and_drop_what_the_model_does_not_take(client, user, make_conversation):
    from conversations.models import Persona

    conversation = make_conversation()
    persona = Persona.objects.get(name="Concise")
    client.force_login(user)
    response = client.post(
        f"/chat/{conversation.pk}/settings/",
        {"model_id": "claude-opus-5-5", "persona": persona.pk, "system_prompt": "",
         "max_tokens": 2000, "thinking": "off", "thinking_budget": 4096, "effort": "high",
         "temperature": "0.5"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert response.status_code == 200 and "Saved" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.model_id == "claude-opus-5-5" and conversation.persona == persona
    assert conversation.effort == "high"
    assert conversation.temperature is None  # Opus 5.5 takes no temperature
    too_long = client.post(
        f"/chat/{conversation.pk}/settings/",
        {"model_id": "claude-opus-5-5", "max_tokens": 10_000_000, "thinking": "on",
         "thinking_budget": 4096, "effort": ""},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    assert "less than or equal to 128000" in too_long.content.decode()


def test_the_page_says_when_earlier_turns_are_not_sent(client, user, make_conversation):
    from conversations.models import Message

    conversation = make_conversation()
    base = timezone.now() - dt.timedelta(minutes=10)
    for i in range(4):
        Message.objects.create(conversation=conversation, role="user",
                               content=[{"type": "text", "text": f"q{i}"}],
                               created_at=base + dt.timedelta(minutes=i))  # fmt: skip
    conversation.history_start = base + dt.timedelta(minutes=2)
    conversation.save()
    client.force_login(user)
    page = client.get(f"/chat/{conversation.pk}/").content.decode()
    assert "no longer sent to Claude" in page
    assert page.count("is-left-out") == 2


def test_the_reply_footer_shows_model_tokens_cost_and_timing(client, user, make_conversation):
    from decimal import Decimal

    from conversations.models import Message

    conversation = make_conversation(total_cost_usd=Decimal("0.0123"))
    Message.objects.create(
        conversation=conversation, role="assistant", status="complete",
        content=[{"type": "text", "text": "Hi"}], model_id="claude-sonnet-5-5",
        input_tokens=120, cache_read_tokens=3400, output_tokens=56,
        cost_usd=Decimal("0.0021"), ttft_ms=412, duration_ms=2300,
    )  # fmt: skip
    client.force_login(user)
    page = client.get(f"/chat/{conversation.pk}/").content.decode()
    for text in ("claude-sonnet-5-5", "120 in", "3,400 cached", "56 out", "$0.0021",
                 "first token 412 ms", "2.3 s", "$0.012"):  # fmt: skip
        assert text in page, text
