"""An in-process snapshot of the door's tables (specs, prices, routes, budgets).

Loaded in one go, kept for `CLAUDE_CONFIG_CACHE_SECONDS`, and dropped at once in the process that
saves or deletes a row (other processes see the change within the TTL). The hot path reads only
this snapshot: no query per call, and one re-read per process when it ages.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.db.models.signals import post_delete, post_save

from claudeapp.claude.pricing import PriceBook, Rates

__all__ = ["BudgetLimit", "DoorConfig", "Route", "Spec", "aget_config", "get_config", "invalidate"]


@dataclass(frozen=True, slots=True)
class Spec:
    """A `ModelSpec` row, detached from the ORM (safe to share between threads)."""

    model_id: str
    display_name: str = ""
    line: str = ""
    aliases: tuple[str, ...] = ()
    context_window: int = 200_000
    max_output_tokens: int = 64_000
    thinking_modes: tuple[str, ...] = ()
    forced_tool_choice: bool = True
    prefill: bool = False
    structured_outputs: bool = True
    effort: bool = False
    sampling_api_version: str = ""
    min_cacheable_tokens: int = 1024
    lifecycle: str = "active"
    legacy: bool = False
    successor: str = ""
    known: bool = True  # False: not in the registry, sent as asked with conservative defaults

    @property
    def retired(self) -> bool:
        return self.lifecycle == "retired"

    @property
    def thinking_always_on(self) -> bool:
        return bool(self.thinking_modes) and "disabled" not in self.thinking_modes


@dataclass(frozen=True, slots=True)
class Route:
    feature: str
    model: str
    premium: str = ""
    fallback: str = ""


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    scope: str  # user | feature | global
    period: str  # day | month
    limit_usd: Decimal
    user_id: int | None = None  # scope user: None is the default for every user
    feature: str = ""


@dataclass
class DoorConfig:
    specs: dict[str, Spec]
    aliases: dict[str, str]
    prices: PriceBook
    routes: dict[str, Route]
    budgets: list[BudgetLimit]
    loaded_at: float = field(default_factory=time.monotonic)

    def spec(self, model_id: str) -> Spec | None:
        canonical = self.aliases.get(model_id, model_id)
        return self.specs.get(canonical)

    def canonical(self, model_id: str) -> str:
        return self.aliases.get(model_id, model_id)

    def route(self, feature: str) -> Route:
        return self.routes.get(feature) or self.routes["default"]

    def budgets_for(self, *, user_id: int | None, feature: str) -> dict[tuple[str, str], Decimal]:
        """{(scope, period): limit} for one call. A user's own row beats the default row."""
        limits: dict[tuple[str, str], Decimal] = {}
        own_user: dict[str, Decimal] = {}
        default_user: dict[str, Decimal] = {}
        for b in self.budgets:
            if b.scope == "user":
                if user_id is None:
                    continue
                if b.user_id == user_id:
                    own_user[b.period] = min(b.limit_usd, own_user.get(b.period, b.limit_usd))
                elif b.user_id is None:
                    default_user[b.period] = min(
                        b.limit_usd, default_user.get(b.period, b.limit_usd)
                    )
            elif b.scope == "feature" and b.feature == feature:
                key = ("feature", b.period)
                limits[key] = min(b.limit_usd, limits.get(key, b.limit_usd))
            elif b.scope == "global":
                key = ("global", b.period)
                limits[key] = min(b.limit_usd, limits.get(key, b.limit_usd))
        for period, limit in {**default_user, **own_user}.items():
            limits[("user", period)] = limit
        return limits


def _settings_routes() -> dict[str, Route]:
    routes = {}
    for feature, conf in settings.CLAUDE_ROUTES.items():
        if isinstance(conf, str):
            conf = {"model": conf}
        routes[feature] = Route(
            feature=feature,
            model=conf["model"],
            premium=conf.get("premium", ""),
            fallback=conf.get("fallback", ""),
        )
    routes.setdefault("default", Route("default", "claude-sonnet-5-5"))
    return routes


def _load() -> DoorConfig:
    from claudeapp.models import Budget, ModelPrice, ModelRoute, ModelSpec

    specs: dict[str, Spec] = {}
    aliases: dict[str, str] = {}
    for row in ModelSpec.objects.all():
        specs[row.model_id] = Spec(
            model_id=row.model_id,
            display_name=row.display_name,
            line=row.line,
            aliases=tuple(row.aliases or ()),
            context_window=row.context_window,
            max_output_tokens=row.max_output_tokens,
            thinking_modes=tuple(row.thinking_modes or ()),
            forced_tool_choice=row.forced_tool_choice,
            prefill=row.prefill,
            structured_outputs=row.structured_outputs,
            effort=row.effort,
            sampling_api_version=row.sampling_api_version,
            min_cacheable_tokens=row.min_cacheable_tokens,
            lifecycle=row.lifecycle,
            legacy=row.legacy,
            successor=row.successor,
        )
        for alias in row.aliases or ():
            aliases[alias] = row.model_id
    prices = PriceBook([Rates.from_row(row) for row in ModelPrice.objects.all()])
    routes = _settings_routes()
    for row in ModelRoute.objects.all():
        routes[row.feature] = Route(
            row.feature, row.model_id, row.premium_model_id, row.fallback_model_id
        )
    budgets = [
        BudgetLimit(b.scope, b.period, b.limit_usd, b.user_id, b.feature)
        for b in Budget.objects.filter(enabled=True)
    ]
    return DoorConfig(specs, aliases, prices, routes, budgets)


_lock = threading.Lock()
_current: DoorConfig | None = None
_generation = 0


def _fresh(config: DoorConfig | None) -> bool:
    return (
        config is not None
        and time.monotonic() - config.loaded_at < settings.CLAUDE_CONFIG_CACHE_SECONDS
    )


def get_config() -> DoorConfig:
    global _current
    config = _current
    if _fresh(config):
        return config  # type: ignore[return-value]
    with _lock:
        if _fresh(_current):
            return _current  # type: ignore[return-value]
        generation = _generation
        config = _load()
        if generation == _generation:  # not invalidated while it was read
            _current = config
        return config


_refresh: asyncio.Task | None = None


async def aget_config() -> DoorConfig:
    """The registry for asyncio code. When the copy is too old (or was dropped after a change),
    every caller waits for the same one re-read: a burst of calls as it ages does not queue a
    hundred reloads on the ORM thread."""
    global _refresh
    config = _current
    if _fresh(config):
        return config  # type: ignore[return-value]
    loop = asyncio.get_running_loop()
    task = _refresh
    if task is None or task.done() or task.get_loop() is not loop:
        # The thread of the caller's other ORM calls: a test's uncommitted registry change
        # stays visible to it.
        task = _refresh = loop.create_task(sync_to_async(get_config, thread_sensitive=True)())
        # Its callers get its error; retrieved here too in case they were all cancelled.
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return await asyncio.shield(task)


def invalidate(**_: object) -> None:
    global _current, _refresh, _generation
    _generation += 1
    _current = None
    _refresh = None  # a re-read begun before the change is not waited for


def _setting_changed(*, setting: str, **_: object) -> None:
    if setting.startswith("CLAUDE_"):
        invalidate()


def _connect_signals() -> None:
    from claudeapp.models import Budget, ModelPrice, ModelRoute, ModelSpec

    setting_changed.connect(_setting_changed, dispatch_uid="claude-config-settings")
    for model in (Budget, ModelPrice, ModelRoute, ModelSpec):
        post_save.connect(invalidate, sender=model, dispatch_uid=f"claude-config-{model.__name__}")
        post_delete.connect(
            invalidate, sender=model, dispatch_uid=f"claude-config-del-{model.__name__}"
        )


_connect_signals()
