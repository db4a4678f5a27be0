"""The project's URLs, plus the documents app's when the project does not include them yet."""

from __future__ import annotations

from django.urls import URLResolver, include, path

from claudeapp.urls import urlpatterns as project_urlpatterns

urlpatterns = list(project_urlpatterns)
if not any(
    isinstance(pattern, URLResolver) and pattern.namespace == "documents"
    for pattern in project_urlpatterns
):
    urlpatterns.append(path("sets/", include("documents.urls")))
