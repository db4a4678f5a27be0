"""The Celery path end to end: a real worker answers, fragments travel through the Redis channel
layer to a websocket on a real ASGI server, Stop and failures end the answer honestly, and only
the person who asked (or staff) may listen."""

from __future__ import annotations

import re

import pytest
from websockets.exceptions import InvalidStatus

from claudeapp.replies import ReplyStatus
from documents.rag import services
from documents.rag.models import RagQuery
from tests.rag.helpers import live, wait_for

pytestmark = [live, pytest.mark.slow]

QUESTION = "What does a break statement in the first suite of a while loop do?"


@pytest.fixture
def stack(rag_worker, rag_server, emulator_clean):
    return emulator_clean


def ask(document_set, user, question: str = QUESTION) -> RagQuery:
    # Queued to the worker when the row commits (autocommit here: at once).
    return services.ragquery_ask(document_set=document_set, user=user, question=question)


def ask_and_listen(document_set, user, answer_socket, question: str = QUESTION):
    """Store the question, open its socket, then queue the answer: the socket sees all of it
    however busy the machine is."""
    from documents.rag.tasks import answer_question

    query = services.ragquery_ask(
        document_set=document_set, user=user, question=question, enqueue=False
    )
    socket = answer_socket(query.pk, user)
    answer_question.delay(query.pk)
    return query, socket


def text_of(frames: list[str]) -> str:
    return re.sub(r"<[^>]+>", "", "".join(frames))


def answer_text_in(frame: str, query: RagQuery) -> bool:
    """Whether a frame carries answer text (not only thinking, which the page keeps hidden)."""
    return bool(re.search(rf'id="rag-{query.pk}-(tail|blocks)" hx-swap-oob="\w+">[^<]', frame))


def test_an_answer_streams_from_a_worker_to_the_page(stack, answer_socket, reference_set, user):
    stack.config(ttft_ms=100, tokens_per_second=150)
    query, socket = ask_and_listen(reference_set, user, answer_socket)
    done = socket.until_done(timeout=60)
    deltas = [f for f in socket.frames if f"rag-{query.pk}-tail" in f and f is not done]
    assert len(deltas) >= 3, socket.frames  # it streamed, fragment by fragment
    query.refresh_from_db()
    assert query.status == ReplyStatus.COMPLETE
    assert query.run_id is not None and query.ttft_ms is not None
    # The last frame replaces the answer with the stored one: markers and sources.
    assert f'id="rag-{query.pk}"' in done and 'class="cite"' in done
    assert "ws-connect" not in done
    assert query.citations and query.cache_write_tokens > 0


def test_a_socket_that_joins_mid_answer_gets_the_text_so_far(stack, answer_socket, reference_set,
                                                             user):  # fmt: skip
    stack.config(ttft_ms=0, tokens_per_second=25)
    query = ask(reference_set, user)
    from claudeapp.replies import reply_snapshot_sync

    wait_for(lambda: (s := reply_snapshot_sync(query.reply_key)) and len(s.text) > 20)
    socket = answer_socket(query.pk, user)
    first = socket.recv()
    assert f'id="rag-{query.pk}-tail" hx-swap-oob="innerHTML"' in first  # the snapshot
    assert len(text_of([first]).strip()) > 20
    socket.until_done(timeout=60)
    query.refresh_from_db()
    assert query.status == ReplyStatus.COMPLETE


def test_stop_from_the_page_keeps_the_partial_answer(stack, answer_socket, reference_set, user):
    stack.config(ttft_ms=0, tokens_per_second=20)
    query, socket = ask_and_listen(reference_set, user, answer_socket)
    while not answer_text_in(socket.recv(), query):  # until some answer text has arrived
        pass
    socket.send(action="stop")
    done = socket.until_done(timeout=30)
    query.refresh_from_db()
    assert query.status == ReplyStatus.STOPPED
    assert query.text and "Stopped" in done
    # The door booked the cut call as stopped, with the tokens that arrived.
    from claudeapp.models import UsageRecord

    row = wait_for(lambda: UsageRecord.objects.filter(subject_id=str(query.pk)).first())
    assert row.outcome == "stopped" and row.output_tokens > 0


def test_stop_before_a_worker_takes_the_question(stack, answer_socket, reference_set, user):
    query = services.ragquery_ask(
        document_set=reference_set, user=user, question=QUESTION, enqueue=False
    )
    socket = answer_socket(query.pk, user)
    socket.send(action="stop")
    done = socket.until_done(timeout=15)
    query.refresh_from_db()
    assert query.status == ReplyStatus.STOPPED and "Stopped" in done
    # A task delivered late (or twice) finds it finished and calls nobody.
    requests = sum(stack.stats()["requests"].values())
    assert services.ragquery_run(query_id=query.pk) is None
    assert sum(stack.stats()["requests"].values()) == requests


def test_a_failure_mid_answer_keeps_the_text_and_says_so(stack, answer_socket, reference_set,
                                                         user):  # fmt: skip
    stack.config(ttft_ms=0, tokens_per_second=100)
    stack.faults(
        [{"kind": "midstream_error", "after_tokens": 80, "error_type": "overloaded_error"}]
    )
    query, socket = ask_and_listen(reference_set, user, answer_socket)
    done = socket.until_done(timeout=30)
    query.refresh_from_db()
    assert query.status == ReplyStatus.FAILED
    assert query.error and query.error in done.replace("&#x27;", "'")
    assert query.text  # what arrived before the error is kept


@pytest.mark.parametrize("who", ["stranger", "colleague", "anonymous"])
def test_sockets_of_anyone_else_are_refused(stack, rag_server, session_cookie, reference_set, user,
                                            other_user, django_user_model, who):  # fmt: skip
    from websockets.sync.client import connect

    query = services.ragquery_ask(
        document_set=reference_set, user=user, question=QUESTION, enqueue=False
    )
    headers = {}
    if who == "stranger":
        headers["Cookie"] = f"sessionid={session_cookie(other_user)}"
    elif who == "colleague":  # a member of the set, but not the one who asked
        colleague = django_user_model.objects.create_user("bob", password="x-x-x-x-1")
        reference_set.members.add(colleague)
        headers["Cookie"] = f"sessionid={session_cookie(colleague)}"
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{rag_server.ws_url}/ws/rag/{query.pk}/", additional_headers=headers,
                origin=rag_server.url, open_timeout=10)  # fmt: skip
    assert refused.value.response.status_code == 403  # closed before the handshake completes
    with pytest.raises(InvalidStatus):  # a question that does not exist: the same answer
        connect(f"{rag_server.ws_url}/ws/rag/{query.pk + 1000}/", additional_headers=headers,
                origin=rag_server.url, open_timeout=10)  # fmt: skip
