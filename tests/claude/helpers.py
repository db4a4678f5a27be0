"""Helpers for the door's tests (probes for emulator features, request counts)."""

from __future__ import annotations

import pytest


def requests_made(emu, path: str = "/v1/messages") -> int:
    """POSTs to `path` the emulator answered (any status)."""
    total = 0
    for name, count in emu.stats()["requests"].items():
        method, _, rest = name.partition(" ")
        route, _, _status = rest.rpartition(" ")
        if method == "POST" and route == path:
            total += count
    return total


def require_prompt_cache(door, emu) -> None:
    """Skip unless the emulator caches prompts (emulator part 2). The probe places its marker by
    hand, so a planner bug fails the test instead of skipping it."""
    from claudeapp.claude import CallContext

    system = [
        {
            "type": "text",
            "text": " ".join(f"probe{i}" for i in range(3000)),
            "cache_control": {"type": "ephemeral", "ttl": "5m"},
        }
    ]
    reply = door.create(
        CallContext("probe"), model="claude-sonnet-5-5", max_tokens=5, system=system,
        messages=[{"role": "user", "content": "probe"}],
    )  # fmt: skip
    if not reply.usage.cache_creation_input_tokens:
        pytest.skip("the emulator has no prompt cache yet (emulator part 2)")
    emu.reset()
    from claudeapp.models import UsageRecord

    UsageRecord.objects.filter(feature="probe").delete()


def require_batches(door) -> None:
    """Skip unless the emulator serves the Message Batches API (emulator part 2)."""
    from claudeapp.claude import InvalidRequest

    try:
        door.batch_list(limit=1)
    except InvalidRequest as exc:
        if exc.status == 404:
            pytest.skip("the emulator has no batches API yet (emulator part 2)")
        raise
