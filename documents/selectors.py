"""Reads. `documentset_visible_to(user)` is THE rule of who sees a set; everything else that
reads sets or documents for a person goes through it."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from documents.models import Chunk, Document, DocumentSet


def user_manages_documents(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Staff (and superusers) manage every set and upload; nobody else does."""
    return bool(user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser))


def documentset_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[DocumentSet]:
    """Sets `user` may read: every set for staff; for others, the sets they are a member of,
    directly or through one of their groups; nothing for anonymous or inactive users."""
    if not user.is_authenticated or not user.is_active:
        return DocumentSet.objects.none()
    if user_manages_documents(user):
        return DocumentSet.objects.all()
    direct = DocumentSet.members.through.objects.filter(
        documentset_id=OuterRef("pk"), user_id=user.pk
    )
    by_group = DocumentSet.member_groups.through.objects.filter(
        documentset_id=OuterRef("pk"), group__user=user.pk
    )
    return DocumentSet.objects.filter(Q(Exists(direct)) | Q(Exists(by_group)))


def documentset_managed_by(user: AbstractBaseUser | AnonymousUser) -> QuerySet[DocumentSet]:
    """Sets `user` may change and upload to (a subset of the visible ones)."""
    if not user_manages_documents(user):
        return DocumentSet.objects.none()
    return documentset_visible_to(user)


def document_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Document]:
    return Document.objects.filter(document_set__in=documentset_visible_to(user))


def documentset_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[DocumentSet]:
    """Visible sets with their document counts by status."""
    return documentset_visible_to(user).annotate(
        document_count=Count("documents"),
        ready_count=Count("documents", filter=Q(documents__status=Document.Status.READY)),
        pending_count=Count("documents", filter=Q(documents__status=Document.Status.PENDING)),
        failed_count=Count("documents", filter=Q(documents__status=Document.Status.FAILED)),
    )


def document_status_counts(*, document_set: DocumentSet) -> dict[str, int]:
    """{"pending": n, "ready": n, "failed": n, "total": n} for one set (one indexed query)."""
    counts = dict.fromkeys(Document.Status.values, 0)
    rows = (
        Document.objects.filter(document_set=document_set)
        .values_list("status")
        .annotate(n=Count("*"))  # not Count("id"): COUNT(*) is answered from the status index
        .order_by()
    )
    for status, n in rows:
        counts[status] = n
    counts["total"] = sum(counts.values())
    return counts


def document_list(*, document_set: DocumentSet, status: str | None = None) -> QuerySet[Document]:
    """A set's documents, newest first, without their (possibly large) text."""
    documents = Document.objects.filter(document_set=document_set).defer("text", "metadata")
    if status in Document.Status.values:
        documents = documents.filter(status=status)
    return documents.order_by("-id")


def chunk_list(*, document: Document) -> QuerySet[Chunk]:
    return Chunk.objects.filter(document=document).order_by("order")
