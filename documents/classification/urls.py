"""Included by `documents.urls` (so the names live in the `documents` namespace)."""

from __future__ import annotations

from django.urls import path

from documents.classification import views

urlpatterns = [
    path("jobs/", views.job_list, name="job-list"),
    path("jobs/new/", views.job_create, name="job-create"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/status/", views.job_status, name="job-status"),
    path("jobs/<int:pk>/results/", views.job_results, name="job-results"),
    path("jobs/<int:pk>/results/<int:document_pk>/", views.job_result, name="job-result"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:pk>/export.<str:fmt>", views.job_export, name="job-export"),
]
