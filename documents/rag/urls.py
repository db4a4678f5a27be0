"""Included by `documents.urls` (so the names live in the `documents` namespace)."""

from __future__ import annotations

from django.urls import path

from documents.rag import views

urlpatterns = [
    path("<int:pk>/ask/", views.ask, name="rag-ask"),
    path("<int:pk>/ask/box/", views.ask_box, name="rag-ask-box"),
    path("<int:pk>/ask/<int:query_pk>/", views.answer, name="rag-answer"),
    path("<int:pk>/ask/<int:query_pk>/stop/", views.stop, name="rag-stop"),
    path("<int:pk>/ask/<int:query_pk>/cite/<int:n>/", views.citation, name="rag-citation"),
]
