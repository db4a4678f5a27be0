"""The project's settings with tests/documents/urls.py as the URL conf: for the live server that
browser tests drive while the project's own URL conf does not include documents.urls yet."""

from claudeapp.settings import *  # noqa: F403

ROOT_URLCONF = "tests.documents.urls"
