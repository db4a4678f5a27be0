"""Prometheus series for the door (served by `/metrics` from the default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

CALLS = Counter(
    "claude_calls_total", "Calls through the door, by outcome.", ["feature", "model", "outcome"]
)
ATTEMPTS = Counter(
    "claude_attempts_total", "HTTP attempts to the API, by result.", ["model", "result"]
)
TOKENS = Counter("claude_tokens_total", "Tokens billed, by kind.", ["feature", "model", "kind"])
COST = Counter("claude_cost_usd_total", "USD booked in the ledger.", ["feature", "model"])
LATENCY = Histogram(
    "claude_call_seconds",
    "Wall time of a call (all attempts and waits).",
    ["feature", "model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
)
TTFT = Histogram(
    "claude_ttft_seconds",
    "Time to the first streamed delta.",
    ["feature", "model"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
REFUSALS = Counter("claude_refusals_total", "Calls refused before sending.", ["feature", "reason"])
CACHE = Counter("claude_response_cache_total", "Response cache lookups.", ["result"])
