"""The one door to the Claude API. Features import only this:

    from claudeapp.claude import door, CallContext

`door` is built once per process from settings, on first use. Importing this package is cheap:
neither the SDK nor the ORM is loaded until the door is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from claudeapp.claude.context import CallContext
from claudeapp.claude.errors import (
    AuthenticationFailed,
    BreakerOpen,
    BudgetExceeded,
    ClaudeError,
    ClaudeNotConfigured,
    ClaudeUnavailable,
    ConcurrencyLimited,
    InvalidRequest,
    InvalidResponse,
    RateLimited,
    SpendLimitReached,
    StreamInterrupted,
    UnsupportedParameter,
)
from claudeapp.claude.streaming import (
    Citation,
    Failed,
    Final,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolUseDelta,
)
from claudeapp.claude.tokens import estimate_tokens

if TYPE_CHECKING:
    from claudeapp.claude.client import BatchResult, Door
    from claudeapp.claude.planner import CachePlan
    from claudeapp.claude.structured import StructuredResult

__all__ = [
    "AuthenticationFailed",
    "BatchResult",
    "BreakerOpen",
    "BudgetExceeded",
    "CachePlan",
    "CallContext",
    "Citation",
    "ClaudeError",
    "ClaudeNotConfigured",
    "ClaudeUnavailable",
    "ConcurrencyLimited",
    "Failed",
    "Final",
    "InvalidRequest",
    "InvalidResponse",
    "RateLimited",
    "SpendLimitReached",
    "StreamEvent",
    "StreamInterrupted",
    "StructuredResult",
    "TextDelta",
    "ThinkingDelta",
    "ToolUseDelta",
    "UnsupportedParameter",
    "door",
    "estimate_tokens",
    "get_door",
    "structured_params",
    "structured_parse",
]


class _LazyDoor:
    """Stands in for the process's `Door` until first use, then forwards to it."""

    def __getattr__(self, name: str) -> Any:
        from claudeapp.claude.client import get_door

        return getattr(get_door(), name)

    def __repr__(self) -> str:
        return "<claudeapp.claude.door (lazy)>"


door: Door = _LazyDoor()  # type: ignore[assignment]


def get_door() -> Door:
    from claudeapp.claude.client import get_door as build

    return build()


def prepare() -> None:
    """Import the SDK and build the door now, as a web process starts (`claudeapp.asgi`): the
    import alone takes about two seconds on a small host, which would otherwise stall the
    process's event loop in its first reply. Nothing to build while Claude is not configured
    (the checks say so; each reply then fails in those words)."""
    from claudeapp.claude.errors import ClaudeNotConfigured

    try:
        get_door()
    except ClaudeNotConfigured:
        pass


def structured_params(schema: dict, model: str, **kw: Any) -> dict[str, Any]:
    """Request params that make `model` answer in `schema` (its native format or a forced tool)."""
    return get_door().structured_params(schema, model, **kw)


def structured_parse(message: Any, schema: dict) -> StructuredResult:
    """A reply read against `schema`: `StructuredResult(value | None, raw_text, error)`."""
    from claudeapp.claude.structured import structured_parse as parse

    return parse(message, schema)


def __getattr__(name: str) -> Any:
    if name == "BatchResult":
        from claudeapp.claude.client import BatchResult

        return BatchResult
    if name == "StructuredResult":
        from claudeapp.claude.structured import StructuredResult

        return StructuredResult
    if name == "CachePlan":
        from claudeapp.claude.planner import CachePlan

        return CachePlan
    raise AttributeError(name)
