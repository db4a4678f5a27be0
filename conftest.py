"""Root conftest: the shared fixtures live in claudeapp.testing (real processes, real services).

Service selection (PostgreSQL or SQLite, machine Redis or bundled) happens earlier, in the
`claudeapp.testing.env` plugin loaded from pyproject's addopts.
"""

pytest_plugins = ["claudeapp.testing.fixtures"]
