"""Settings of the live server and worker these tests start: the project's, with the documents
URLs mounted when the project does not mount them yet."""

from claudeapp.settings import *  # noqa: F403

ROOT_URLCONF = "tests.rag.urls"
