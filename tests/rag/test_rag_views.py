"""Ask pages over HTTP: members ask and read, strangers get 404 everywhere, the cited passage is
highlighted in its document."""

from __future__ import annotations

import pytest
from django.urls import reverse

from claudeapp.replies import ReplyStatus
from documents.rag.models import RagQuery
from tests.rag.helpers import build_set, topic

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered(reference_set, user):
    """A finished answer citing one sentence of while.txt."""
    document = reference_set.documents.get(filename="while.txt")
    sentence = 'A "break" statement executed in the first suite terminates the loop'
    start = document.text.index(sentence)
    return RagQuery.objects.create(
        document_set=reference_set,
        user=user,
        question="What does break do in a while loop?",
        strategy=RagQuery.Strategy.WHOLE_SET,
        status=ReplyStatus.COMPLETE,
        content=[{"type": "text", "text": "It ends the loop."}],
        html='<p>It ends the loop.<sup class="cite-refs"><a class="cite" href="#">1</a></sup></p>',
        citations=[
            {
                "n": 1,
                "document": document.pk,
                "title": "while.txt",
                "start": start,
                "end": start + len(sentence),
                "page_start": None,
                "page_end": None,
                "cited_text": sentence,
                "chunk": None,
            }
        ],  # fmt: skip
        input_tokens=20,
        cache_read_tokens=4000,
        output_tokens=12,
    )


def urls(document_set, query):
    return [
        ("get", reverse("documents:rag-ask", args=[document_set.pk])),
        ("post", reverse("documents:rag-ask", args=[document_set.pk])),
        ("get", reverse("documents:rag-ask-box", args=[document_set.pk])),
        ("get", reverse("documents:rag-answer", args=[document_set.pk, query.pk])),
        ("post", reverse("documents:rag-stop", args=[document_set.pk, query.pk])),
        ("get", reverse("documents:rag-citation", args=[document_set.pk, query.pk, 1])),
    ]


def test_strangers_get_404_on_every_rag_page(client, other_user, reference_set, answered):
    client.force_login(other_user)
    for method, url in urls(reference_set, answered):
        response = getattr(client, method)(url, {"question": "Leak?"} if method == "post" else {})
        assert response.status_code == 404, url
    assert not RagQuery.objects.filter(question="Leak?").exists()


def test_anonymous_visitors_are_sent_to_log_in(client, reference_set, answered):
    response = client.get(reverse("documents:rag-ask", args=[reference_set.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_members_do_not_see_each_others_questions(client, django_user_model, reference_set,
                                                  answered):  # fmt: skip
    colleague = django_user_model.objects.create_user("bob", password="x-x-x-x-1")
    reference_set.members.add(colleague)
    client.force_login(colleague)
    page = client.get(reverse("documents:rag-ask", args=[reference_set.pk]))
    assert page.status_code == 200 and answered.question not in page.content.decode()
    url = reverse("documents:rag-answer", args=[reference_set.pk, answered.pk])
    assert client.get(url).status_code == 404


def test_staff_see_every_question(client, staff_user, reference_set, answered):
    client.force_login(staff_user)
    page = client.get(reverse("documents:rag-ask", args=[reference_set.pk]))
    assert answered.question in page.content.decode()


def test_the_ask_page_shows_history_with_usage_and_sources(client, user, reference_set, answered):
    client.force_login(user)
    page = client.get(reverse("documents:rag-ask", args=[reference_set.pk])).content.decode()
    assert answered.question in page
    assert "4,000 read from cache" in page
    cite_url = reverse("documents:rag-citation", args=[reference_set.pk, answered.pk, 1])
    assert cite_url in page
    assert "ws-connect" not in page  # finished answers open no socket


def test_asking_over_htmx_returns_the_streaming_answer_and_a_fresh_form(client, user,
                                                                       reference_set):  # fmt: skip
    client.force_login(user)
    url = reverse("documents:rag-ask", args=[reference_set.pk])
    response = client.post(url, {"question": "How does try/finally work?"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    query = RagQuery.objects.get(question="How does try/finally work?")
    body = response.content.decode()
    assert f'ws-connect="/ws/rag/{query.pk}/"' in body
    assert 'id="rag-ask-form"' in body and 'hx-swap-oob="outerHTML"' in body
    assert query.status == ReplyStatus.STREAMING and query.run_id is None


def test_an_empty_question_is_refused_in_the_form(client, user, reference_set):
    client.force_login(user)
    url = reverse("documents:rag-ask", args=[reference_set.pk])
    response = client.post(url, {"question": "  "}, HTTP_HX_REQUEST="true")
    assert response["HX-Retarget"] == "#rag-ask-form"
    assert "Type a question first." in response.content.decode()
    assert not RagQuery.objects.exists()


def test_the_citation_page_highlights_the_cited_passage(client, user, reference_set, answered):
    client.force_login(user)
    url = reverse("documents:rag-citation", args=[reference_set.pk, answered.pk, 1])
    page = client.get(url).content.decode()
    assert ('<mark id="cited" class="rag-cited">A &quot;break&quot; statement '
            "executed in the first suite terminates the loop</mark>") in page  # fmt: skip
    assert "while.txt" in page
    missing = reverse("documents:rag-citation", args=[reference_set.pk, answered.pk, 2])
    assert client.get(missing).status_code == 404


def test_a_passage_in_a_document_of_another_set_is_not_shown(client, user, staff_user,
                                                             reference_set, answered):  # fmt: skip
    elsewhere = build_set("Secret", {"secret.txt": topic("if")}, owner=staff_user)
    secret = elsewhere.documents.get()
    answered.citations = [{**answered.citations[0], "document": secret.pk}]
    answered.save()
    client.force_login(user)
    url = reverse("documents:rag-citation", args=[reference_set.pk, answered.pk, 1])
    assert client.get(url).status_code == 404


def test_the_set_page_loads_the_ask_box(client, user, reference_set, answered):
    client.force_login(user)
    page = client.get(reference_set.get_absolute_url()).content.decode()
    box_url = reverse("documents:rag-ask-box", args=[reference_set.pk])
    assert f'hx-get="{box_url}"' in page
    box = client.get(box_url, HTTP_HX_REQUEST="true").content.decode()
    assert 'id="rag-ask-form"' in box and answered.question in box
    assert "All questions and answers" in box
