"""Root conftest: the shared fixtures live in claudeapp.testing (real processes, real services)
and in the emulator's plugin (`emulator`, `emulator_clean`, `emulator_factory`).

Service selection (PostgreSQL or SQLite, machine Redis or bundled) happens earlier, in the
`claudeapp.testing.env` plugin loaded from pyproject's addopts; it also picks the port the
session emulator listens on, so settings point the door at it before Django starts.
"""

pytest_plugins = ["emulator.pytest_plugin", "claudeapp.testing.fixtures"]
