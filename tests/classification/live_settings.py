"""Settings for a live server in these tests: the project's, with the documents URLs mounted
when the project does not mount them yet."""

from claudeapp.settings import *  # noqa: F403

ROOT_URLCONF = "tests.classification.urls"
