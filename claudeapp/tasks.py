from __future__ import annotations

import time

from celery import shared_task

from claudeapp.redis import get_redis, key


@shared_task(name="claudeapp.tasks.beat_heartbeat")
def beat_heartbeat() -> None:
    """Beat proves it is alive by leaving a timestamp that /healthz and admins can read."""
    get_redis().set(key("beat", "last"), str(time.time()), ex=300)
