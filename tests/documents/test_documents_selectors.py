"""`documentset_visible_to(user)`: the one rule of who sees a set."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Group

from documents import selectors, services

pytestmark = pytest.mark.django_db


@pytest.fixture
def sets(staff_user, user, other_user):
    readers = Group.objects.create(name="readers")
    other_user.groups.add(readers)
    direct = services.documentset_create(name="Direct", owner=staff_user, members=[user])
    by_group = services.documentset_create(
        name="By group", owner=staff_user, member_groups=[readers]
    )
    both = services.documentset_create(
        name="Both", owner=staff_user, members=[user, other_user], member_groups=[readers]
    )
    hidden = services.documentset_create(name="Hidden", owner=staff_user)
    return direct, by_group, both, hidden


def names(queryset) -> list[str]:
    return sorted(queryset.values_list("name", flat=True))


def test_members_see_their_sets_directly_or_through_groups(sets, user, other_user):
    assert names(selectors.documentset_visible_to(user)) == ["Both", "Direct"]
    assert names(selectors.documentset_visible_to(other_user)) == ["Both", "By group"]


def test_a_set_reached_twice_is_listed_once(sets, other_user):
    assert selectors.documentset_visible_to(other_user).filter(name="Both").count() == 1


def test_staff_and_superusers_see_every_set(sets, staff_user, admin_user):
    every = ["Both", "By group", "Direct", "Hidden"]
    assert names(selectors.documentset_visible_to(staff_user)) == every
    assert names(selectors.documentset_visible_to(admin_user)) == every


def test_anonymous_and_inactive_users_see_nothing(sets, user, staff_user):
    assert not selectors.documentset_visible_to(AnonymousUser()).exists()
    user.is_active = False
    staff_user.is_active = False
    assert not selectors.documentset_visible_to(user).exists()
    assert not selectors.documentset_visible_to(staff_user).exists()


def test_only_staff_manage(sets, user, staff_user):
    assert not selectors.documentset_managed_by(user).exists()
    assert selectors.documentset_managed_by(staff_user).count() == 4
    assert selectors.user_manages_documents(staff_user)
    assert not selectors.user_manages_documents(user)


def test_documents_follow_their_sets(sets, user, samples):
    from django.core.files.uploadedfile import SimpleUploadedFile

    direct, _, _, hidden = sets
    for document_set in (direct, hidden):
        services.documents_import(
            document_set=document_set,
            incoming=services.incoming_from_uploads(
                [SimpleUploadedFile("if.txt", samples.topic("if").encode())]
            ),
        )
    visible = selectors.document_visible_to(user)
    assert [d.document_set.name for d in visible] == ["Direct"]


def test_status_counts(sets, samples):
    from django.core.files.uploadedfile import SimpleUploadedFile

    direct = sets[0]
    report = services.documents_import(
        document_set=direct,
        incoming=services.incoming_from_uploads(
            [
                SimpleUploadedFile("a.txt", b"Alpha."),
                SimpleUploadedFile("b.txt", b"Beta."),
                SimpleUploadedFile("c.pdf", b"%PDF-1.4 broken"),
            ]
        ),
    )
    services.documents_extract(document_ids=report.document_ids[:2])
    assert selectors.document_status_counts(document_set=direct) == {
        "pending": 1,
        "ready": 2,
        "failed": 0,
        "total": 3,
    }
