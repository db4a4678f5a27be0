"""Reads for RAG. Who sees a question: whoever sees its set (`documentset_visible_to`, the one
rule) and asked it; staff see every question of every set."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import CharField, Q, QuerySet, Sum
from django.db.models.functions import Cast
from django.utils import timezone

from documents.models import DocumentSet
from documents.rag import prompts
from documents.rag.models import RagQuery, RagSetCache
from documents.selectors import documentset_visible_to, user_manages_documents

User = AbstractBaseUser | AnonymousUser


def ragquery_visible_to(user: User) -> QuerySet[RagQuery]:
    queries = RagQuery.objects.filter(document_set__in=documentset_visible_to(user))
    if user_manages_documents(user):
        return queries
    return queries.filter(user_id=user.pk)


def ragquery_history(*, document_set: DocumentSet, user: User, limit: int = 50) -> list[RagQuery]:
    """The questions on the set this person may see, newest first."""
    return list(
        ragquery_visible_to(user)
        .filter(document_set=document_set)
        .select_related("user")
        .order_by("-created_at", "-id")[:limit]
    )


@dataclass(frozen=True)
class CacheStatus:
    strategy: str  # what the next question would use
    size_tokens: int
    budget_tokens: int
    warm: bool
    touched_at: dt.datetime | None
    expires_at: dt.datetime | None
    questions: int
    cache_read_tokens: int
    prompt_tokens: int
    cost_usd: Decimal
    uncached_cost_usd: Decimal

    @property
    def saved_usd(self) -> Decimal:
        return max(Decimal(0), self.uncached_cost_usd - self.cost_usd)

    @property
    def read_share(self) -> float:
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


def _ledger_rows(document_set: DocumentSet):
    from claudeapp.models import UsageRecord

    query_ids = RagQuery.objects.filter(document_set=document_set).annotate(
        sid=Cast("pk", CharField())
    )
    return UsageRecord.objects.filter(feature="rag").filter(
        Q(subject_type=RagQuery._meta.label_lower, subject_id__in=query_ids.values("sid"))
        | Q(subject_type=DocumentSet._meta.label_lower, subject_id=str(document_set.pk))
    )


def set_cache_status(*, document_set: DocumentSet, model_id: str | None = None) -> CacheStatus:
    """Whether the set's document prompt is in Claude's cache now (as far as our calls show),
    and what caching has saved: the ledger's cost against the same tokens billed uncached."""
    from claudeapp.claude.config import get_config
    from claudeapp.claude.pricing import Tokens, compute_cost

    now = timezone.now()
    size = prompts.set_size_tokens(document_set)
    strategy = prompts.choose_strategy(size)
    state = RagSetCache.objects.filter(pk=document_set.pk).first()
    warm = False
    expires = None
    if state is not None and state.touched_at is not None:
        expires = state.touched_at + dt.timedelta(seconds=settings.RAG_CACHE_TTL_SECONDS)
        warm = expires > now and strategy == prompts.Strategy.WHOLE_SET
        if warm and model_id:
            warm = state.fingerprint == prompts.set_fingerprint(document_set.pk, model_id)
    config = get_config()
    cost = uncached = Decimal(0)
    read = prompt = 0
    per_model = (
        _ledger_rows(document_set)
        .values("model_id")
        .annotate(
            input=Sum("input_tokens"),
            write5=Sum("cache_write_5m_tokens"),
            write1=Sum("cache_write_1h_tokens"),
            read=Sum("cache_read_tokens"),
            output=Sum("output_tokens"),
            cost=Sum("cost_usd"),
        )
    )
    for row in per_model:
        tokens_in = (row["input"] or 0) + (row["write5"] or 0) + (row["write1"] or 0)
        tokens_in += row["read"] or 0
        read += row["read"] or 0
        prompt += tokens_in
        cost += row["cost"] or Decimal(0)
        rates = config.prices.rates_at(config.canonical(row["model_id"]), now)
        if rates is not None:
            uncached += compute_cost(Tokens(input=tokens_in, output=row["output"] or 0), rates)
    return CacheStatus(
        strategy=strategy,
        size_tokens=size,
        budget_tokens=settings.RAG_WHOLE_SET_MAX_TOKENS,
        warm=warm,
        touched_at=state.touched_at if state else None,
        expires_at=expires,
        questions=RagQuery.objects.filter(document_set=document_set).count(),
        cache_read_tokens=read,
        prompt_tokens=prompt,
        cost_usd=cost,
        uncached_cost_usd=uncached,
    )
