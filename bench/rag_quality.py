"""Retrieval quality on a labelled question set: recall@k and MRR per stage and for the fusion.

    .venv/bin/python bench/rag_quality.py                     # lexical (PostgreSQL, else SQLite)
    .venv/bin/python bench/rag_quality.py --db sqlite         # lexical on SQLite FTS5
    PYTHON_WITH_MODEL bench/rag_quality.py --embeddings       # + embeddings + fusion

The set is CPython's 79 reference topics (pydoc_data), chunked by the documents app's chunker
(400 tokens, 60 overlap), optionally with man pages added as distractors (--distractors N).
Each labelled question names its topic and a passage copied from it; a chunk answers when it
covers the passage's first character. recall@k: share of questions with an answering chunk in
the top k; MRR: mean of 1/rank of the first answering chunk (0 when none in the top 50).
"""

from __future__ import annotations

import argparse
import re
import time

from rag_common import build_set, configure, labelled_questions, man_page_texts, setup_django
from rag_common import topic_texts as topics

KS = (1, 3, 5, 10)


def passage_start(text: str, passage: str) -> int:
    pattern = r"\s+".join(re.escape(word) for word in passage.split())
    match = re.search(pattern, text)
    return match.start() if match else -1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["auto", "postgres", "sqlite"], default="auto")
    parser.add_argument("--embeddings", action="store_true")
    parser.add_argument("--distractors", type=int, default=300, help="man pages added")
    args = parser.parse_args()
    configure("rag_quality", db=args.db)
    setup_django()

    from django.contrib.auth import get_user_model
    from django.db import connection

    from documents.models import Chunk
    from documents.rag import retrieval

    owner = get_user_model().objects.create_user("bench-owner")
    texts = topics()
    texts.update(man_page_texts(args.distractors))
    document_set, chunk_count = build_set("quality", texts, owner)
    questions = labelled_questions()
    chunks = {
        c.pk: c
        for c in Chunk.objects.filter(document__document_set=document_set).select_related(
            "document"
        )
    }
    print(f"set: {len(texts)} documents ({len(texts) - len(topics())} man pages), "
          f"{chunk_count} chunks; {len(questions)} labelled questions; "
          f"database: {connection.vendor}")  # fmt: skip

    def answers(chunk_id: int, topic: str, passage: str) -> bool:
        chunk = chunks.get(chunk_id)
        if chunk is None or chunk.document.filename != f"{topic}.txt":
            return False
        start = passage_start(chunk.document.text, passage)
        return chunk.start <= start < chunk.end

    rankings: dict[str, list[list[int]]] = {"lexical": []}
    timings: dict[str, list[float]] = {"lexical": []}
    retrieval.index_set(document_set.pk)
    if args.embeddings:
        from documents.rag import embeddings

        started = time.perf_counter()
        embeddings.embed_set(document_set.pk)
        print(f"embedded {chunk_count} chunks in {time.perf_counter() - started:.0f} s")
        rankings["embedding"], timings["embedding"] = [], []
        rankings["fusion (rrf)"] = []
    for question, _, _ in questions:
        started = time.perf_counter()
        lexical = retrieval.lexical_search(document_set.pk, question, 50)
        timings["lexical"].append(time.perf_counter() - started)
        rankings["lexical"].append(lexical)
        if args.embeddings:
            started = time.perf_counter()
            semantic = embeddings.embedding_search(document_set.pk, question, 50)
            timings["embedding"].append(time.perf_counter() - started)
            rankings["embedding"].append(semantic)
            rankings["fusion (rrf)"].append(retrieval.rrf([lexical, semantic]))

    header = "stage".ljust(14) + "".join(f"recall@{k}".rjust(11) for k in KS) + "MRR".rjust(8)
    print("\n" + header)
    for stage, ranked in rankings.items():
        hits = dict.fromkeys(KS, 0)
        reciprocal = 0.0
        for (_, topic, passage), ids in zip(questions, ranked, strict=True):
            rank = next(
                (i for i, cid in enumerate(ids[:50], start=1) if answers(cid, topic, passage)),
                None,
            )
            if rank is not None:
                reciprocal += 1 / rank
                for k in KS:
                    hits[k] += rank <= k
        n = len(questions)
        row = stage.ljust(14) + "".join(f"{hits[k] / n:11.2f}" for k in KS)
        print(row + f"{reciprocal / n:8.3f}")
    for stage, values in timings.items():
        values.sort()
        print(f"{stage} search time per question: median {values[len(values) // 2] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
