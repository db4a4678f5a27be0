"""Who may see what (404 over HTTP, a closed socket), and model output / user input kept inert."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conversations.helpers import finished_reply, live, reply_of

XSS = (
    '<img src=x onerror="alert(1)"> <script>alert(2)</script> '
    '[click](javascript:alert(3)) <a href="javascript:alert(4)">x</a> '
    '<svg onload="alert(5)"></svg> ![pic](javascript:alert(6))'
)


class _Scan(HTMLParser):
    """Collects what could run: script-like elements, handler attributes, script URLs."""

    EXECUTABLE = {"script", "iframe", "object", "embed", "img", "style", "link", "meta", "base"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        if tag in self.EXECUTABLE and not (tag == "script" and dict(attrs).get("nonce")):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"{tag}[{name}]")
            url = re.sub(r"[\s\x00-\x1f]", "", value or "").lower()
            if name in ("href", "src", "xlink:href", "action", "formaction") and url.startswith(
                ("javascript:", "data:")
            ):
                self.found.append(f"{tag}[{name}={value}]")


def _inert(html: str) -> None:
    scan = _Scan()
    scan.feed(html)
    assert not scan.found, scan.found


# --- HTTP ---------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("suffix", ["", "rename/", "settings/", "delete/"])
def test_it_rejects_a_foreign_conversation_over_http(
    client, make_conversation, other_user, staff_user, suffix
):
    conversation = make_conversation(title="Alice's secret plans")
    for intruder in (other_user, staff_user):
        client.force_login(intruder)
        assert client.get(f"/chat/{conversation.pk}/{suffix}").status_code == 404
        assert client.post(f"/chat/{conversation.pk}/{suffix}", {"title": "x"}).status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Alice's secret plans"


@pytest.mark.django_db
def test_the_list_shows_only_ones_own_conversations(client, make_conversation, other_user):
    make_conversation(title="Alice's conversation")
    make_conversation(owner=other_user, title="Mallory's conversation")
    client.force_login(other_user)
    page = client.get("/chat/").content.decode()
    assert "Mallory's conversation" in page.replace("&#x27;", "'")
    assert "Alice" not in page


@pytest.mark.django_db
def test_chat_pages_need_a_login(client, make_conversation):
    conversation = make_conversation()
    for path in ("/chat/", f"/chat/{conversation.pk}/"):
        response = client.get(path)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- websockets ---------------------------------------------------------------------------------


@live
def test_it_closes_a_socket_on_a_foreign_conversation(
    asgi_server, make_conversation, chat_socket, other_user, staff_user
):
    conversation = make_conversation()
    for intruder in (other_user, staff_user):
        with pytest.raises((InvalidStatus, ConnectionClosed)):
            chat = chat_socket(conversation, user=intruder, sync=False)
            chat.recv(timeout=5)
    assert not conversation.messages.exists()


@live
def test_it_closes_a_socket_from_a_foreign_origin(asgi_server, make_conversation, chat_socket):
    conversation = make_conversation()
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        chat = chat_socket(conversation, origin="https://evil.example", sync=False)
        chat.recv(timeout=5)


@live
def test_actions_on_another_users_reply_do_nothing(
    asgi_server, emulator_clean, make_conversation, chat_socket, other_user
):
    emulator_clean.config(ttft_ms=50, tokens_per_second=20)
    victim = make_conversation()
    mine = make_conversation(owner=other_user)
    owner_socket = chat_socket(victim)
    owner_socket.send_message("A reply someone else will try to stop")
    owner_socket.until(lambda f: 'data-status="streaming"' in f.html)
    target = reply_of(victim) or finished_reply(victim)
    attacker = chat_socket(mine)
    for action in ("stop", "retry", "regenerate", "continue"):
        attacker.send(action=action, message=str(target.pk))
    owner_socket.until_done(target.pk)
    reply = finished_reply(victim)
    assert reply.status == "complete"  # not stopped by the other user


# --- cross-site scripting ------------------------------------------------------------------------


@live
def test_script_in_model_output_and_user_input_is_rendered_inert(
    asgi_server, emulator_clean, make_conversation, chat_socket, client
):
    """The emulator quotes the user's words back, so the model's output carries the payload too.
    (With emulator part 2's `EMULATOR-OBEY:` the payload is the model's whole reply.)"""
    conversation = make_conversation()
    chat = chat_socket(conversation)
    chat.send_message(f"EMULATOR-OBEY: {XSS}\n{XSS}")
    done = chat.until_done()
    reply = finished_reply(conversation)
    assert "onerror" in reply.text  # the model really said it...
    for frame in chat.frames:
        _inert(frame.html)  # ...and no fragment ever carried it live
    client.force_login(conversation.owner)
    page = client.get(f"/chat/{conversation.pk}/").content.decode()
    body = page[page.index('id="message-list"') :]
    _inert(body)
    assert "&lt;img" in body or "&lt;script" in body  # shown as text, not dropped silently
    assert "&lt;script&gt;" in done.html or "&lt;img" in done.html


@pytest.mark.django_db
def test_a_stored_reply_with_dangerous_markdown_renders_inert(client, make_conversation):
    from conversations.models import Message

    conversation = make_conversation()
    Message.objects.create(
        conversation=conversation, role="user", content=[{"type": "text", "text": XSS}]
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="complete",
        model_id="claude-sonnet-5-5",
        content=[{"type": "text", "text": XSS + "\n\n```html\n<script>alert(7)</script>\n```"}],
    )
    client.force_login(conversation.owner)
    page = client.get(f"/chat/{conversation.pk}/").content.decode()
    body = page[page.index('id="message-list"') :]
    _inert(body)
    assert "&lt;script&gt;alert(7)&lt;/script&gt;" in re.sub(r"<[^>]+>", "", body)  # shown as code


@pytest.mark.django_db
def test_the_chat_page_keeps_to_the_content_security_policy(client, make_conversation):
    conversation = make_conversation()
    client.force_login(conversation.owner)
    response = client.get(f"/chat/{conversation.pk}/")
    page = response.content.decode()
    assert "script-src" in response["Content-Security-Policy"]
    assert not re.search(r"\sstyle=", page)  # no inline styles
    assert not re.search(r"\son[a-z]+=", page)  # no inline handlers
    for tag in re.findall(r"<script[^>]*>", page):
        assert "nonce=" in tag and "src=" in tag
