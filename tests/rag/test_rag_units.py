"""Retrieval, strategy choice, prompt layout, citation mapping and answer rendering: no Claude
call, no live process."""

from __future__ import annotations

import pytest
from django.utils import timezone

from documents.models import Chunk, Document
from documents.rag import prompts, retrieval
from documents.rag.citations import locate, number_citations
from documents.rag.models import RagQuery
from documents.rag.rendering import answer_html
from documents.rag.services import RagError, ragquery_ask
from tests.rag.helpers import build_set, topic

pytestmark = pytest.mark.django_db


# --- strategy at the size boundary ----------------------------------------------------------


def test_it_puts_a_set_that_fits_the_budget_exactly_in_context(reference_set, user, settings):
    size = prompts.set_size_tokens(reference_set)
    settings.RAG_WHOLE_SET_MAX_TOKENS = size
    query = ragquery_ask(document_set=reference_set, user=user, question="What is if?",
                         enqueue=False)  # fmt: skip
    assert query.strategy == RagQuery.Strategy.WHOLE_SET
    assert query.set_tokens == size


def test_it_retrieves_for_a_set_one_token_over_the_budget(reference_set, user, settings):
    size = prompts.set_size_tokens(reference_set)
    settings.RAG_WHOLE_SET_MAX_TOKENS = size - 1
    query = ragquery_ask(document_set=reference_set, user=user, question="What is if?",
                         enqueue=False)  # fmt: skip
    assert query.strategy == RagQuery.Strategy.RETRIEVED


def test_the_set_size_counts_only_ready_documents(reference_set):
    size = prompts.set_size_tokens(reference_set)
    assert size == sum(d.token_estimate for d in reference_set.documents.all())
    reference_set.documents.filter(filename="if.txt").update(status=Document.Status.FAILED)
    assert prompts.set_size_tokens(reference_set) < size


def test_it_refuses_a_question_on_a_set_without_ready_documents(user, staff_user):
    empty = build_set("Empty", {}, owner=staff_user, members=(user,))
    with pytest.raises(RagError, match="ready"):
        ragquery_ask(document_set=empty, user=user, question="Anything?", enqueue=False)
    with pytest.raises(RagError):
        ragquery_ask(document_set=empty, user=user, question="   ", enqueue=False)


# --- retrieval ---------------------------------------------------------------------------------


def test_query_terms_drop_stop_words_and_keep_order():
    assert retrieval.query_terms("What does the WHILE statement do, then the while loop?") == [
        "while",
        "statement",
        "loop",
    ]
    assert retrieval.query_terms("what is the meaning of a") == ["is"]


def test_rrf_rewards_agreement_between_rankings():
    fused = retrieval.rrf([[1, 2, 3], [3, 2, 9]], k=60)
    assert set(fused[:2]) == {2, 3} and fused.index(1) == 2  # in both lists beats first once
    assert retrieval.rrf([[5, 6]], k=60) == [5, 6]
    assert retrieval.rrf([], k=60) == []


def test_lexical_search_finds_the_passage_that_answers(reference_set):
    found = retrieval.retrieve(reference_set.pk, "What happens with the else clause when a loop "
                               "is terminated by break?", top_k=3)  # fmt: skip
    chunks = Chunk.objects.filter(pk__in=found.chunk_ids).select_related("document")
    assert found.chunk_ids and "lexical" in found.stages
    assert {c.document.filename for c in chunks} & {"while.txt", "for.txt"}
    best = Chunk.objects.get(pk=found.chunk_ids[0])
    assert "break" in best.text


def test_the_index_follows_chunks_that_come_and_go(reference_set):
    assert retrieval.index_set(reference_set.pk) > 0
    assert retrieval.index_set(reference_set.pk, force=True) == 0  # nothing new
    document = reference_set.documents.get(filename="with.txt")
    hits = retrieval.lexical_search(reference_set.pk, "context manager __enter__", 50)
    assert set(hits) & set(document.chunks.values_list("pk", flat=True))
    document.chunks.all().delete()
    # Re-extraction: the document's chunks are replaced and its extraction time moves on.
    Chunk.objects.create(document=document, order=0, start=0, end=20,
                         text="zanzibarian quokka", token_count=4)  # fmt: skip
    Document.objects.filter(pk=document.pk).update(chunk_count=1, extracted_at=timezone.now())
    found = retrieval.retrieve(reference_set.pk, "context manager __enter__ quokka", top_k=50)
    live_ids = set(Chunk.objects.values_list("pk", flat=True))
    assert set(found.chunk_ids) <= live_ids  # deleted chunks are gone from the index
    assert document.chunks.get().pk in found.chunk_ids


def test_the_index_check_is_skipped_while_the_documents_are_unchanged(
    reference_set, django_capture_on_commit_callbacks, django_assert_num_queries
):
    with django_capture_on_commit_callbacks(execute=True):
        retrieval.index_set(reference_set.pk)
    with django_assert_num_queries(1):  # the stamp of the set's documents, nothing else
        assert retrieval.index_set(reference_set.pk) == 0
    document = reference_set.documents.first()
    Chunk.objects.create(document=document, order=999, start=0, end=5, text="quokka",
                         token_count=1)  # fmt: skip
    Document.objects.filter(pk=document.pk).update(chunk_count=document.chunk_count + 1)
    assert retrieval.index_set(reference_set.pk) == 1


def test_search_stays_inside_its_set(reference_set, user, staff_user):
    other = build_set("Other", {"try.txt": topic("try")}, owner=staff_user)
    ids = retrieval.retrieve(other.pk, "exception handler finally clause", top_k=10).chunk_ids
    assert ids
    assert set(
        Chunk.objects.filter(pk__in=ids).values_list("document__document_set", flat=True)
    ) == {other.pk}


def test_search_treats_operator_characters_as_words(reference_set):
    for question in ['"unbalanced', "NEAR(a b)", "a | b & !c", "x:y*", "'); DROP TABLE x; --"]:
        retrieval.retrieve(reference_set.pk, question, top_k=3)  # no syntax error


# --- prompts ---------------------------------------------------------------------------------


def test_whole_set_prompt_sends_documents_as_cited_blocks_in_a_fixed_order(reference_set):
    prompt = prompts.whole_set_prompt(reference_set.pk, "claude-sonnet-5-5")
    documents = list(reference_set.documents.order_by("id"))
    assert [b["title"] for b in prompt.documents] == [d.filename for d in documents]
    assert all(b["type"] == "document" and b["citations"] == {"enabled": True}
               for b in prompt.documents)  # fmt: skip
    assert [s["document"] for s in prompt.sources] == [d.pk for d in documents]
    params = prompts.request_params(prompt, "What is a for loop?", model_id="claude-sonnet-5-5",
                                    max_tokens=100)  # fmt: skip
    system_text = " ".join(b["text"] for b in params["system"])
    assert topic("for")[:200] not in system_text  # documents never in the instructions
    (turn,) = params["messages"]
    assert [b["type"] for b in turn["content"]] == ["document"] * 5 + ["text"]
    assert turn["content"][-1] == {"type": "text", "text": "What is a for loop?"}
    # The planner's 1h breakpoint right after the documents, nothing on the question.
    assert turn["content"][4]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in turn["content"][-1]
    again = prompts.whole_set_prompt(reference_set.pk, "claude-sonnet-5-5")
    assert again.fingerprint == prompt.fingerprint
    assert prompts.whole_set_prompt(reference_set.pk, "claude-opus-5-5").fingerprint != (
        prompt.fingerprint
    )


def test_retrieved_prompt_orders_chunks_by_document_and_position(reference_set):
    chunks = list(Chunk.objects.filter(document__document_set=reference_set))
    picked = [chunks[7].pk, chunks[0].pk, chunks[3].pk, chunks[1].pk]  # score order
    prompt = prompts.retrieved_prompt(reference_set.pk, picked)
    by_position = sorted(
        Chunk.objects.filter(pk__in=picked), key=lambda c: (c.document_id, c.order)
    )
    assert [s["chunk"] for s in prompt.sources] == [c.pk for c in by_position]
    assert [b["content"][0]["text"] for b in prompt.documents] == [c.text for c in by_position]
    assert all(b["type"] == "search_result" and b["citations"] == {"enabled": True}
               for b in prompt.documents)  # fmt: skip
    shuffled = prompts.retrieved_prompt(reference_set.pk, list(reversed(picked)))
    assert shuffled.documents == prompt.documents  # same chunks, same prefix


# --- citations -------------------------------------------------------------------------------


def test_char_locations_map_to_the_exact_document_passage(reference_set):
    prompt = prompts.whole_set_prompt(reference_set.pk, "claude-sonnet-5-5")
    document = reference_set.documents.get(filename="while.txt")
    index = [s["document"] for s in prompt.sources].index(document.pk)
    sentence = 'A "break" statement executed in the first suite terminates the loop'
    start = document.text.index(sentence)
    citation = {"type": "char_location", "document_index": index, "start_char_index": start,
                "end_char_index": start + len(sentence), "cited_text": sentence}  # fmt: skip
    passage = locate(citation, prompt.sources)
    assert passage["document"] == document.pk
    assert document.text[passage["start"] : passage["end"]] == sentence


def test_search_result_citations_narrow_to_the_cited_text_in_the_chunk(reference_set):
    chunk = Chunk.objects.filter(document__filename="try.txt").order_by("order")[1]
    prompt = prompts.retrieved_prompt(reference_set.pk, [chunk.pk])
    cited = chunk.text[40:140]
    blocks = [{"type": "text", "text": "It says so.",
               "citations": [{"type": "search_result_location", "search_result_index": 0,
                              "start_block_index": 0, "end_block_index": 1,
                              "cited_text": cited, "source": "x", "title": "t"}]}]  # fmt: skip
    texts = {chunk.document_id: chunk.document.text}
    passages, numbers = number_citations(blocks, prompt.sources, texts)
    assert numbers == [[1]]
    (passage,) = passages
    assert chunk.document.text[passage["start"] : passage["end"]] == cited
    assert passage["start"] == chunk.start + 40


def test_page_numbers_come_from_the_pdf_page_spans(user, staff_user):
    text = "First page sentence one. Another one.\n\nSecond page talks about loops."
    cut = text.index("Second")
    pdf_set = build_set("PDF", {"doc.pdf": text}, owner=staff_user,
                        pages={"doc.pdf": [[0, cut], [cut, len(text)]]})  # fmt: skip
    prompt = prompts.whole_set_prompt(pdf_set.pk, "claude-sonnet-5-5")
    citation = {"type": "char_location", "document_index": 0, "start_char_index": cut,
                "end_char_index": len(text), "cited_text": text[cut:]}  # fmt: skip
    passage = locate(citation, prompt.sources)
    assert (passage["page_start"], passage["page_end"]) == (2, 2)


def test_the_same_passage_cited_twice_keeps_one_number(reference_set):
    prompt = prompts.whole_set_prompt(reference_set.pk, "claude-sonnet-5-5")
    cite = {"type": "char_location", "document_index": 1, "start_char_index": 0,
            "end_char_index": 30, "cited_text": "x"}  # fmt: skip
    other = {**cite, "start_char_index": 40, "end_char_index": 60}
    blocks = [
        {"type": "text", "text": "Intro. "},
        {"type": "text", "text": "A", "citations": [cite]},
        {"type": "text", "text": "B", "citations": [other, cite]},
        {"type": "text", "text": "C", "citations": [{**cite, "document_index": 99}]},
    ]
    passages, numbers = number_citations(blocks, prompt.sources, {})
    assert numbers == [[], [1], [2, 1], []]
    assert [p["n"] for p in passages] == [1, 2]


# --- rendering --------------------------------------------------------------------------------


def test_answers_render_markers_that_open_the_passage_and_nothing_unsafe():
    blocks = [
        {"type": "text", "text": "According to the documents: "},
        {"type": "text", "text": "loops can have an *else* clause.", "citations": [{}]},
        {"type": "text", "text": " <script>alert(1)</script>[x](javascript:alert(1))\ue0001\ue001"},
    ]
    html = answer_html(set_id=3, query_id=9, blocks=blocks, numbers=[[], [1], []])
    assert '<a class="cite" href="/sets/3/ask/9/cite/1/#cited"' in html
    assert html.count('class="cite"') == 1  # the model cannot forge a marker
    assert "<script>" not in html and 'href="javascript' not in html
    assert "<em>else</em>" in html


def test_the_sweeper_fails_an_answer_whose_worker_died_and_keeps_its_text(reference_set, user):
    import datetime as dt
    import uuid

    from django.utils import timezone

    from claudeapp.redis import get_redis
    from claudeapp.replies import ReplyStatus, snapshot_key, sweep_stale_replies

    query = RagQuery.objects.create(
        document_set=reference_set, user=user, question="Q?", strategy="whole_set",
        status=ReplyStatus.STREAMING, run_id=uuid.uuid4(),
        started_at=timezone.now() - dt.timedelta(minutes=5),
        heartbeat_at=timezone.now() - dt.timedelta(minutes=5),
    )  # fmt: skip
    get_redis().hset(snapshot_key(query.reply_key), mapping={"seq": 3, "text": "Half an ans"})
    assert sweep_stale_replies() >= 1
    query.refresh_from_db()
    assert query.status == ReplyStatus.FAILED and query.error_kind == "runner_lost"
    assert query.text == "Half an ans"
    assert "Half an ans" in query.body_html
