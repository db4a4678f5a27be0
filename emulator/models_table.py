"""The emulator's own copy of the model capability table (reference section K, prices section G).

The app keeps its own registry seeded from the same table; a drift test compares the two, so
neither imports the other. Values the sources left open are marked ``chosen`` in the reference and
copied here as they are. Lifecycle is the table's, never derived from today's date.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ADAPTIVE = "adaptive"
ENABLED = "enabled"
DISABLED = "disabled"
BETWEEN_TOOLS = "between_tools"
THINKING_TYPES = (ADAPTIVE, ENABLED, DISABLED, BETWEEN_TOOLS)
EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")

# Release dates are known only where the dated id or the docs give one; the SDK documents an
# epoch value for an unknown release date, so that is what the others carry.
EPOCH = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class Prices:
    """USD per million tokens (section G); batch is 50% of all of them."""

    input: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    output: float
    # Haiku 5.5 bills a whole request at these rates when its gross prompt is over the threshold.
    long_prompt_threshold: int | None = None
    long_prompt: tuple[float, float, float, float, float] | None = None

    def as_dict(self) -> dict:
        out: dict = {
            "input": self.input,
            "cache_write_5m": self.cache_write_5m,
            "cache_write_1h": self.cache_write_1h,
            "cache_read": self.cache_read,
            "output": self.output,
            "batch_discount": 0.5,
        }
        if self.long_prompt is not None:
            names = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
            out["long_prompt"] = {
                "threshold_tokens": self.long_prompt_threshold,
                **dict(zip(names, self.long_prompt, strict=True)),
            }
        return out


@dataclass(frozen=True)
class ModelSpec:
    id: str
    display_name: str
    line: str
    context_window: int
    max_output: int
    thinking: frozenset[str]
    forced_tool_choice: bool
    prefill: bool
    structured_output: bool
    effort: bool
    sampling: bool  # temperature/top_p/top_k under anthropic-version 2023-06-01
    min_cacheable_tokens: int
    prices: Prices
    lifecycle: str = "active"
    legacy: bool = False
    retires_at: str | None = None
    successor: str | None = None
    created_at: str = EPOCH
    aliases: tuple[str, ...] = ()
    xhigh: bool = False
    chosen: tuple[str, ...] = field(default=())

    @property
    def default_thinking(self) -> str:
        """What the model does when the request has no ``thinking``: always-on models think."""
        return DISABLED if DISABLED in self.thinking else ADAPTIVE

    def info(self) -> dict:
        """``ModelInfo`` as ``GET /v1/models/{id}`` returns it, plus our extra fields."""
        sup = _sup
        effort_levels = {lvl: sup(self.effort) for lvl in ("low", "medium", "high", "max")}
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
            "max_input_tokens": self.context_window,
            "max_tokens": self.max_output,
            "line": self.line,
            "lifecycle": self.lifecycle,
            "deprecated_at": None,
            "retires_at": self.retires_at,
            "capabilities": {
                "batch": sup(True),
                "citations": sup(True),
                "code_execution": sup(True),
                "context_management": {
                    "supported": True,
                    "clear_thinking_20251015": sup(True),
                    "clear_tool_uses_20250919": sup(True),
                    "compact_20260112": sup(True),
                },
                "effort": {
                    "supported": self.effort,
                    **effort_levels,
                    "xhigh": sup(self.effort and self.xhigh),
                },
                "image_input": sup(True),
                "pdf_input": sup(True),
                "server_tools": {
                    "supported": True,
                    "code_execution": sup(True),
                    "web_search": sup(True),
                },
                "structured_outputs": sup(self.structured_output),
                "thinking": {
                    "supported": bool(self.thinking - {DISABLED}),
                    "types": {t: sup(t in self.thinking) for t in THINKING_TYPES},
                },
            },
            # Extra fields (the SDK keeps unknown fields): the rest of section K and G, so the
            # app's registry can refresh every fact it holds from here.
            "aliases": list(self.aliases),
            "legacy": self.legacy,
            "successor": self.successor,
            "forced_tool_choice": self.forced_tool_choice,
            "prefill": self.prefill,
            "sampling_2023_06_01": self.sampling,
            "min_cacheable_tokens": self.min_cacheable_tokens,
            "default_thinking": self.default_thinking,
            "pricing_usd_per_mtok": self.prices.as_dict(),
        }


def _sup(flag: bool) -> dict:
    return {"supported": bool(flag)}


_M = 1_000_000
_K128 = 128_000
_K64 = 64_000
_K200 = 200_000

_OPUS4 = Prices(5, 6.25, 10, 0.50, 25)
_SONNET4 = Prices(3, 3.75, 6, 0.30, 15)

# Order: as section K lists them (newest families first), which is also the /v1/models order.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        "claude-opus-5-5", "Claude Opus 5.5", "opus", _M, _K128, frozenset({ADAPTIVE}),
        forced_tool_choice=False, prefill=False, structured_output=True, effort=True,
        sampling=False, min_cacheable_tokens=1024, prices=Prices(4, 5, 8, 0.20, 20), xhigh=True,
        chosen=("min_cacheable_tokens",),
    ),
    ModelSpec(
        "claude-sonnet-5-5", "Claude Sonnet 5.5", "sonnet", _M, _K128,
        frozenset({ADAPTIVE, BETWEEN_TOOLS}),
        forced_tool_choice=False, prefill=False, structured_output=True, effort=True,
        sampling=False, min_cacheable_tokens=1024, prices=Prices(2, 2.5, 4, 0.20, 10), xhigh=True,
        chosen=("min_cacheable_tokens",),
    ),
    ModelSpec(
        "claude-haiku-5-5", "Claude Haiku 5.5", "haiku", _M, _K128,
        frozenset({ADAPTIVE, DISABLED}),
        forced_tool_choice=True, prefill=False, structured_output=True, effort=True,
        sampling=False, min_cacheable_tokens=2048,
        prices=Prices(
            0.10, 0.125, 0.20, 0.01, 0.50,
            long_prompt_threshold=100_000, long_prompt=(0.50, 0.625, 1.0, 0.05, 2.50),
        ),
        created_at="2026-10-07T00:00:00Z", xhigh=True,
        chosen=("thinking", "forced_tool_choice", "prefill", "effort", "sampling",
                "min_cacheable_tokens"),
    ),
    ModelSpec(
        "claude-fable-5-1", "Claude Fable 5.1", "fable", _M, _K128, frozenset({ADAPTIVE}),
        forced_tool_choice=False, prefill=False, structured_output=True, effort=True,
        sampling=False, min_cacheable_tokens=512, prices=Prices(10, 12.5, 20, 0.25, 50),
        xhigh=True,
    ),
    ModelSpec(
        "claude-opus-5", "Claude Opus 5", "opus", _M, _K128, frozenset({ADAPTIVE, DISABLED}),
        forced_tool_choice=False, prefill=False, structured_output=True, effort=True,
        sampling=False, min_cacheable_tokens=512, prices=Prices(5, 6.25, 10, 0.50, 25),
        legacy=True, xhigh=True, chosen=("thinking", "forced_tool_choice"),
    ),
    ModelSpec(
        "claude-sonnet-5", "Claude Sonnet 5", "sonnet", _M, _K128,
        frozenset({ADAPTIVE, DISABLED}),
        forced_tool_choice=False, prefill=False, structured_output=True, effort=True,
        sampling=False, min_cacheable_tokens=1024, prices=Prices(2, 2.5, 4, 0.20, 10),
        legacy=True, xhigh=True, chosen=("thinking", "forced_tool_choice"),
    ),
    ModelSpec(
        "claude-opus-4-8", "Claude Opus 4.8", "opus", _M, _K128, frozenset({ADAPTIVE, DISABLED}),
        forced_tool_choice=True, prefill=False, structured_output=True, effort=True,
        sampling=False, min_cacheable_tokens=1024, prices=_OPUS4, xhigh=True,
        chosen=("context_window", "max_output", "forced_tool_choice", "prefill", "sampling",
                "min_cacheable_tokens"),
    ),
    ModelSpec(
        "claude-opus-4-7", "Claude Opus 4.7", "opus", _M, _K128, frozenset({ADAPTIVE, DISABLED}),
        forced_tool_choice=True, prefill=False, structured_output=True, effort=True,
        sampling=False, min_cacheable_tokens=2048, prices=_OPUS4, xhigh=True,
        chosen=("context_window", "max_output", "forced_tool_choice", "prefill", "sampling"),
    ),
    ModelSpec(
        "claude-opus-4-6", "Claude Opus 4.6", "opus", _M, _K128,
        frozenset({ADAPTIVE, ENABLED, DISABLED}),
        forced_tool_choice=True, prefill=False, structured_output=True, effort=True,
        sampling=True, min_cacheable_tokens=4096, prices=_OPUS4,
        chosen=("max_output", "prefill", "sampling"),
    ),
    ModelSpec(
        "claude-sonnet-4-6", "Claude Sonnet 4.6", "sonnet", _M, _K64,
        frozenset({ADAPTIVE, ENABLED, DISABLED}),
        forced_tool_choice=True, prefill=False, structured_output=True, effort=True,
        sampling=True, min_cacheable_tokens=2048, prices=_SONNET4,
        chosen=("context_window", "max_output", "prefill", "effort"),
    ),
    ModelSpec(
        "claude-opus-4-5", "Claude Opus 4.5", "opus", _K200, _K64, frozenset({ENABLED, DISABLED}),
        forced_tool_choice=True, prefill=True, structured_output=True, effort=True,
        sampling=True, min_cacheable_tokens=4096, prices=_OPUS4,
        created_at="2025-11-01T00:00:00Z", aliases=("claude-opus-4-5-20251101",),
        chosen=("prefill", "sampling"),
    ),
    ModelSpec(
        "claude-haiku-4-5", "Claude Haiku 4.5", "haiku", _K200, _K64,
        frozenset({ENABLED, DISABLED}),
        forced_tool_choice=True, prefill=True, structured_output=True, effort=False,
        sampling=True, min_cacheable_tokens=4096, prices=Prices(1, 1.25, 2, 0.10, 5),
        legacy=True, created_at="2025-10-01T00:00:00Z", aliases=("claude-haiku-4-5-20251001",),
        chosen=("prefill", "effort", "sampling"),
    ),
    ModelSpec(
        "claude-sonnet-4-5", "Claude Sonnet 4.5", "sonnet", _K200, _K64,
        frozenset({ENABLED, DISABLED}),
        forced_tool_choice=True, prefill=True, structured_output=True, effort=False,
        sampling=True, min_cacheable_tokens=1024, prices=_SONNET4,
        lifecycle="deprecated", retires_at="2026-11-30T00:00:00Z", successor="claude-sonnet-5-5",
        created_at="2025-09-29T00:00:00Z", aliases=("claude-sonnet-4-5-20250929",),
        chosen=("prefill", "effort", "sampling", "successor"),
    ),
)  # fmt: skip

BY_ID: dict[str, ModelSpec] = {m.id: m for m in MODELS}
_ALIASES: dict[str, ModelSpec] = {a: m for m in MODELS for a in m.aliases}


def resolve(model_id: str) -> ModelSpec | None:
    """The table row for an id or a dated alias; ``None`` when the API would answer 404."""
    spec = BY_ID.get(model_id) or _ALIASES.get(model_id)
    if spec is None or spec.lifecycle == "retired":
        return None
    return spec


def lookup(model_id: str) -> ModelSpec | None:
    """Like :func:`resolve` but also finds retired rows (``/v1/models`` still lists them)."""
    return BY_ID.get(model_id) or _ALIASES.get(model_id)
