"""Finding the chunks that answer a question.

Lexical stage, in the database: PostgreSQL full-text search (a stored `tsvector` per chunk, GIN
index, `ts_rank_cd`) or SQLite FTS5 (`bm25()`), over an index of our own (`ChunkSearch`) that
each question brings up to date for its set first (the documents app inserts chunks in bulk
and knows nothing of it). The question's words are OR-ed: a question is not a conjunction.

Optional embedding stage (`RAG_EMBEDDINGS`, see `documents.rag.embeddings`): cosine similarity
over the set's chunk embeddings. Stages are fused by reciprocal rank fusion.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

__all__ = [
    "Retrieval",
    "index_set",
    "lexical_search",
    "query_terms",
    "retrieve",
    "rrf",
]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Words that carry no meaning in a question (on SQLite, FTS5 has no stop list, and an OR over
# "the" matches every chunk). Words that are also keywords of programming languages ("if",
# "while", "for", "with", "not"...) stay: people ask about them.
_STOPWORD_TEXT = """
    a about above after again against all am an any are at be because been before being below
    between both but by can could did do does doing down during each few further had has have
    having he her here hers him his how i into it its itself just me more most my no nor now of
    off on once only other our out over own same she should so some such than that the their
    them then there these they this those through to too under until up very was we were what
    when where which who whom why will would you your explain describe tell give show happens
    happen mean means meaning please
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
MAX_TERMS = 32
MAX_RANKED_TERMS = 10
COMMON_SHARE = 0.2  # a word in more than this share of a set's chunks is common there


def query_terms(question: str) -> list[str]:
    """The question's searchable words, lower-cased, in order, each once."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(question.lower()):
        if word in _STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        seen.setdefault(word, None)
        if len(seen) >= MAX_TERMS:
            break
    return list(seen)


# --- the index ---------------------------------------------------------------------------------


def _documents_stamp(document_set_id: int) -> str:
    """What the set's chunks depend on, cheaply: on PostgreSQL its ready documents' ids, chunk
    counts and extraction times (a few small rows: the text is stored apart); on SQLite, where
    reading those columns means reading past each document's text, the count and last id of
    its chunks (from an index). Either changes whenever the chunks do."""
    from django.db.models import Count, Max, Sum

    from documents.models import Chunk, Document

    if connection.vendor == "postgresql":
        stamp = Document.objects.filter(
            document_set_id=document_set_id, status=Document.Status.READY
        ).aggregate(
            n=Count("id"), chunks=Sum("chunk_count"), last=Max("id"), at=Max("extracted_at")
        )
        return f"{stamp['n']}:{stamp['chunks']}:{stamp['last']}:{stamp['at']}"
    stamp = Chunk.objects.filter(document__document_set_id=document_set_id).aggregate(
        n=Count("id"), last=Max("id")
    )
    return f"{stamp['n']}:{stamp['last']}"


def index_set(document_set_id: int, *, force: bool = False) -> int:
    """Bring the set's lexical index up to date: add chunks not yet indexed, drop rows of chunks
    that are gone. Returns how many chunks were added. Safe beside a concurrent run. Skipped
    (one small query and a Redis read) while the set's documents are as they were last time."""
    from claudeapp.redis import get_redis, key

    stamp_key = key("rag", "indexed", document_set_id)
    stamp = _documents_stamp(document_set_id)
    with contextlib.suppress(Exception):  # no Redis: check the index itself
        if not force and (get_redis().get(stamp_key) or b"").decode() == stamp:
            return 0
    added = _index_set(document_set_id)
    transaction.on_commit(lambda: _remember_stamp(stamp_key, stamp))
    return added


def _remember_stamp(stamp_key: str, stamp: str) -> None:
    from claudeapp.redis import get_redis

    with contextlib.suppress(Exception):
        get_redis().set(stamp_key, stamp, ex=7 * 86400)


def _index_set(document_set_id: int) -> int:
    vendor = connection.vendor
    with transaction.atomic(), connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                """
                DELETE FROM rag_chunksearch s
                WHERE s.document_set_id = %s
                  AND NOT EXISTS (SELECT 1 FROM documents_chunk c WHERE c.id = s.chunk_id)
                """,
                [document_set_id],
            )
            cursor.execute(
                """
                INSERT INTO rag_chunksearch (chunk_id, document_set_id, vector)
                SELECT c.id, d.document_set_id, to_tsvector('english', c.text)
                FROM documents_chunk c JOIN documents_document d ON d.id = c.document_id
                WHERE d.document_set_id = %s
                  AND NOT EXISTS (SELECT 1 FROM rag_chunksearch s WHERE s.chunk_id = c.id)
                ON CONFLICT (chunk_id) DO NOTHING
                """,
                [document_set_id],
            )
            added = max(cursor.rowcount, 0)
            if added:
                # New rows wait in the GIN index's pending list, which every search would scan
                # until the next vacuum: merge them now, in one bulk pass (far faster than
                # inserting into the index row by row).
                cursor.execute("SELECT gin_clean_pending_list('rag_chunksearch_vector'::regclass)")
            return added
        if vendor == "sqlite":
            cursor.execute(
                """
                DELETE FROM rag_chunkfts WHERE rowid IN (
                  SELECT s.chunk_id FROM rag_chunksearch s WHERE s.document_set_id = %s
                  AND NOT EXISTS (SELECT 1 FROM documents_chunk c WHERE c.id = s.chunk_id))
                """,
                [document_set_id],
            )
            cursor.execute(
                """
                DELETE FROM rag_chunksearch WHERE document_set_id = %s
                  AND NOT EXISTS (SELECT 1 FROM documents_chunk c
                                  WHERE c.id = rag_chunksearch.chunk_id)
                """,
                [document_set_id],
            )
            new = """
                FROM documents_chunk c JOIN documents_document d ON d.id = c.document_id
                WHERE d.document_set_id = %s
                  AND NOT EXISTS (SELECT 1 FROM rag_chunksearch s WHERE s.chunk_id = c.id)
            """
            cursor.execute(
                "INSERT OR REPLACE INTO rag_chunkfts (rowid, text, document_set_id) "  # noqa: S608
                f"SELECT c.id, c.text, d.document_set_id {new}",
                [document_set_id],
            )
            cursor.execute(
                "INSERT INTO rag_chunksearch (chunk_id, document_set_id, vector) "  # noqa: S608
                f"SELECT c.id, d.document_set_id, NULL {new}",
                [document_set_id],
            )
            return max(cursor.rowcount, 0)
    raise NotImplementedError(f"no lexical search on {vendor}")


# Per process: each set's document frequencies by lexeme, valid while its documents are as they
# were (the same stamp as the index check).
_stats: dict[int, tuple[str, int, dict[str, int]]] = {}


def _pg_weighted_terms(cursor, document_set_id: int, terms: list[str]) -> list[tuple[str, float]]:  # noqa: ANN001
    """(tsquery text, idf) for each term the English dictionary keeps, the set's document
    frequencies read once per version of its documents (ts_stat over the set), not per
    question."""
    version = _documents_stamp(document_set_id)
    cached = _stats.get(document_set_id)
    if cached is None or cached[0] != version:
        # ts_stat takes its query as text; the only value in it is an int.
        inner = "SELECT vector FROM rag_chunksearch WHERE document_set_id = "  # noqa: S608
        cursor.execute("SELECT word, ndoc FROM ts_stat(%s)", [inner + str(int(document_set_id))])
        frequencies = dict(cursor.fetchall())
        cursor.execute(
            "SELECT count(*) FROM rag_chunksearch WHERE document_set_id = %s", [document_set_id]
        )
        cached = (version, cursor.fetchone()[0], frequencies)
        _stats[document_set_id] = cached
    _, total, frequencies = cached
    cursor.execute(
        "SELECT DISTINCT q::text, strip(to_tsvector('english', t))::text "
        "FROM unnest(%s::text[]) t, plainto_tsquery('english', t) q WHERE numnode(q) = 1",
        [terms],
    )
    weighted = []
    for query, lexeme in cursor.fetchall():
        frequency = frequencies.get(lexeme.strip("'"), 0)
        if frequency:
            idf = math.log(1 + (total - frequency + 0.5) / (frequency + 0.5))
            weighted.append((query, idf, frequency))
    # Words in a large share of the chunks weigh almost nothing but would pull thousands of
    # candidates through the ranking: leave them out unless nothing rarer was asked.
    weighted.sort(key=lambda term: -term[1])
    rare = [t for t in weighted if t[2] <= COMMON_SHARE * total]
    kept = (rare or weighted[:2])[:MAX_RANKED_TERMS]
    return [(query, idf) for query, idf, _ in kept]


def lexical_search(document_set_id: int, question: str, limit: int) -> list[int]:
    """Chunk ids of the set, best first, by the database's full-text ranking. Call
    `index_set` first (as `retrieve` does): it also drops the rows of deleted chunks."""
    terms = query_terms(question)
    if not terms or limit <= 0:
        return []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # BM25-like: each term's rank in the chunk (ts_rank, length-normalised) weighted by
            # its inverse document frequency in the set, summed. ts_rank alone has no IDF, so
            # common words ("function", "value") would outweigh the rare ones that matter.
            weighted = _pg_weighted_terms(cursor, document_set_id, terms)
            if not weighted:
                return []
            cursor.execute(
                """
                SELECT s.chunk_id
                FROM unnest(%s::tsquery[], %s::float8[]) AS w(q, idf)
                JOIN rag_chunksearch s ON s.document_set_id = %s AND s.vector @@ w.q
                GROUP BY s.chunk_id
                ORDER BY sum(w.idf * ts_rank(s.vector, w.q, 1)) DESC, s.chunk_id
                LIMIT %s
                """,
                [[q for q, _ in weighted], [idf for _, idf in weighted], document_set_id, limit],
            )
        else:
            # Each term quoted: FTS5 reads it as a string, never as an operator. `rank` is
            # bm25() by default, and ORDER BY rank is FTS5's own fast path.
            query = " OR ".join(f'"{term}"' for term in terms)
            cursor.execute(
                """
                SELECT rowid FROM rag_chunkfts
                WHERE rag_chunkfts MATCH %s AND document_set_id = %s
                ORDER BY rank
                LIMIT %s
                """,
                [query, document_set_id, limit],
            )
        return [row[0] for row in cursor.fetchall()]


# --- fusion ----------------------------------------------------------------------------------


def rrf(rankings: Sequence[Sequence[int]], k: int | None = None) -> list[int]:
    """Reciprocal rank fusion: each id scores sum(1 / (k + rank)) over the rankings it is in
    (rank from 1); ties keep the order of first appearance."""
    k = settings.RAG_RRF_K if k is None else k
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    order = {item: i for i, item in enumerate(dict.fromkeys(x for r in rankings for x in r))}
    return sorted(scores, key=lambda item: (-scores[item], order[item]))


@dataclass
class Retrieval:
    chunk_ids: list[int]  # the top k, best first
    stages: dict[str, list[int]] = field(default_factory=dict)  # each stage's ranking
    index_ms: int = 0
    search_ms: int = 0


def retrieve(
    document_set_id: int,
    question: str,
    *,
    top_k: int | None = None,
    embeddings: bool | None = None,
) -> Retrieval:
    """The set's best chunks for `question`: lexical, plus embeddings when switched on, fused."""
    top_k = settings.RAG_TOP_K if top_k is None else top_k
    embeddings = settings.RAG_EMBEDDINGS if embeddings is None else embeddings
    candidates = max(settings.RAG_CANDIDATES, top_k)
    started = time.perf_counter()
    index_set(document_set_id)
    if embeddings:
        from documents.rag import embeddings as embedding_stage

        embedding_stage.embed_set(document_set_id)
    indexed = time.perf_counter()
    stages = {"lexical": lexical_search(document_set_id, question, candidates)}
    if embeddings:
        stages["embedding"] = embedding_stage.embedding_search(
            document_set_id, question, candidates
        )
        fused = rrf(list(stages.values()))
    else:
        fused = stages["lexical"]
    done = time.perf_counter()
    return Retrieval(
        chunk_ids=fused[:top_k],
        stages=stages,
        index_ms=int((indexed - started) * 1000),
        search_ms=int((done - indexed) * 1000),
    )
