from __future__ import annotations

from django.urls import path

from conversations import views

app_name = "conversations"

urlpatterns = [
    path("", views.conversation_list, name="list"),
    path("new/", views.conversation_create, name="create"),
    path("<uuid:conversation_id>/", views.conversation_detail, name="detail"),
    path("<uuid:conversation_id>/rename/", views.conversation_rename, name="rename"),
    path("<uuid:conversation_id>/settings/", views.conversation_settings, name="settings"),
    path("<uuid:conversation_id>/delete/", views.conversation_delete, name="delete"),
    path(
        "<uuid:conversation_id>/messages/<uuid:message_id>/cite/<int:n>/",
        views.message_citation,
        name="citation",
    ),
]
