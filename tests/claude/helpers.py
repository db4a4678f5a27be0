"""Helpers for the door's tests (request counts)."""

from __future__ import annotations


def requests_made(emu, path: str = "/v1/messages") -> int:
    """POSTs to `path` the emulator answered (any status)."""
    total = 0
    for name, count in emu.stats()["requests"].items():
        method, _, rest = name.partition(" ")
        route, _, _status = rest.rpartition(" ")
        if method == "POST" and route == path:
            total += count
    return total
