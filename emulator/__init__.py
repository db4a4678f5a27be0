"""Offline emulator of the Anthropic Messages API (see issue 3 and ARCHITECTURE.md).

A standalone ASGI server that the official ``anthropic`` SDK cannot tell from the real service
for what claudeapp uses. It imports nothing of Django so it can run beside any process.
"""

from __future__ import annotations

__all__ = ["DEFAULT_API_KEY", "__version__"]

__version__ = "1.0.0"
DEFAULT_API_KEY = "emulator-key"
