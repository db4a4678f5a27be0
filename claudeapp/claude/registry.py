"""Model choice: the routing table picks a model per feature; the registry says what it accepts.

A dated alias resolves to its short id; a retired model is replaced by its successor (logged)
before anything is sent. An id the registry does not know is sent as asked, with conservative
assumptions (no sampling, no effort), and logged once.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from claudeapp.claude.config import DoorConfig, Spec

__all__ = ["Choice", "cheapest_model", "choose", "resolve"]

log = logging.getLogger("claudeapp.claude")
_warned_unknown: set[str] = set()
CHEAPEST = "cheapest"


@dataclass(frozen=True, slots=True)
class Choice:
    requested: str  # what the caller or the route asked for
    spec: Spec  # what will be sent
    fallback: str = ""  # the route's fallback while the breaker is open


def resolve(config: DoorConfig, model_id: str) -> Spec:
    """The spec that a request for `model_id` is sent as (alias and retirement applied)."""
    seen: set[str] = set()
    current = model_id
    while True:
        spec = config.spec(current)
        if spec is None:
            if current not in _warned_unknown:
                _warned_unknown.add(current)
                log.warning(
                    "model not in the registry; sent as asked",
                    extra={"event": "claude.model_unknown", "model": current},
                )
            return Spec(model_id=current, known=False)
        if not spec.retired or not spec.successor or spec.model_id in seen:
            return spec
        seen.add(spec.model_id)
        log.warning(
            "retired model mapped to its successor",
            extra={
                "event": "claude.model_retired",
                "model": spec.model_id,
                "successor": spec.successor,
            },
        )
        current = spec.successor


def cheapest_model(config: DoorConfig, when: dt.datetime | None = None) -> str:
    """The active, non-legacy model with the lowest input + output price now."""
    when = when or dt.datetime.now(dt.UTC)
    best: tuple[object, str] | None = None
    for spec in config.specs.values():
        if spec.lifecycle != "active" or spec.legacy:
            continue
        rates = config.prices.rates_at(spec.model_id, when)
        if rates is None:
            continue
        key = (rates.input + rates.output, spec.model_id)
        if best is None or key < best:  # type: ignore[operator]
            best = key
    if best is None:
        return config.route("default").model
    return best[1]


def choose(
    config: DoorConfig, feature: str, *, model: str | None = None, premium: bool = False
) -> Choice:
    route = config.route(feature)
    requested = model or (route.premium if premium and route.premium else route.model)
    if requested == CHEAPEST:
        requested = cheapest_model(config)
    spec = resolve(config, requested)
    fallback = route.fallback
    if fallback == CHEAPEST:
        fallback = cheapest_model(config)
    if fallback and resolve(config, fallback).model_id == spec.model_id:
        fallback = ""
    return Choice(requested=requested, spec=spec, fallback=fallback)
