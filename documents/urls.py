from __future__ import annotations

from django.urls import include, path

from documents import views

app_name = "documents"

urlpatterns = [
    path("", views.set_list, name="set-list"),
    path("new/", views.set_create, name="set-create"),
    path("<int:pk>/", views.set_detail, name="set-detail"),
    path("<int:pk>/edit/", views.set_edit, name="set-edit"),
    path("<int:pk>/delete/", views.set_delete, name="set-delete"),
    path("<int:pk>/upload/", views.upload, name="upload"),
    path("<int:pk>/documents/", views.document_list, name="document-list"),
    path("<int:pk>/documents/<int:document_pk>/", views.document_detail, name="document-detail"),
    path(
        "<int:pk>/documents/<int:document_pk>/original/",
        views.document_original,
        name="document-original",
    ),
    path("", include("documents.classification.urls")),  # classification jobs (issue 8)
    path("", include("documents.rag.urls")),  # questions and answers (issue 9)
]
