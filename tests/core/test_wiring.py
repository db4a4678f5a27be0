from __future__ import annotations

import time
import uuid

import pytest

from claudeapp.redis import get_redis, key


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.mark.django_db(transaction=True)
def test_celery_round_trip_through_real_broker_and_worker(celery_worker, user):
    from claudeapp.testing.tasks import round_trip

    token = uuid.uuid4().hex
    round_trip.delay(token, user.username)
    value = wait_for(lambda: get_redis().get(key("test-round-trip", token)))
    assert value.decode() == f"{user.pk}:{user.email}"


def _ws_connect(server, path: str, cookie: str | None, origin: str | None = None):
    from websockets.sync.client import connect

    headers = {}
    if cookie:
        headers["Cookie"] = f"sessionid={cookie}"
    return connect(
        f"{server.ws_url}{path}",
        additional_headers=headers,
        origin=origin or server.url,
        open_timeout=10,
    )


@pytest.mark.django_db(transaction=True)
def test_websocket_delivers_group_messages_through_the_real_channel_layer(
    asgi_server, user, session_cookie
):
    import json

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from claudeapp.consumers import user_group

    with _ws_connect(asgi_server, "/ws/events/", session_cookie(user)) as socket:
        # The server joined the group before accepting; send from this process through Redis.
        async_to_sync(get_channel_layer().group_send)(
            user_group(user.pk), {"type": "user.event", "payload": {"hello": "world"}}
        )
        assert json.loads(socket.recv(timeout=10)) == {"hello": "world"}


@pytest.mark.django_db(transaction=True)
def test_it_refuses_an_unauthenticated_socket(asgi_server):
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    with (
        pytest.raises((InvalidStatus, ConnectionClosed)),
        _ws_connect(asgi_server, "/ws/events/", None) as socket,
    ):
        socket.recv(timeout=5)


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_socket_from_a_foreign_origin(asgi_server, user, session_cookie):
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    with (
        pytest.raises((InvalidStatus, ConnectionClosed)),
        _ws_connect(
            asgi_server, "/ws/events/", session_cookie(user), origin="https://evil.example"
        ) as socket,
    ):
        socket.recv(timeout=5)


@pytest.mark.django_db(transaction=True)
def test_a_task_killed_with_sigkill_is_completed_by_a_restarted_worker(celery_worker_factory):
    """acks_late + reject_on_worker_lost + a short visibility timeout: nothing is lost."""
    from claudeapp.testing.tasks import slow_mark

    # Not the session worker: this test's own worker, on its own queue, with a short timeout.
    queue = f"kill-{uuid.uuid4().hex[:6]}"
    env = {"CELERY_QUEUE": queue, "CELERY_VISIBILITY_TIMEOUT": "3"}
    first = celery_worker_factory(**env)
    token = uuid.uuid4().hex
    slow_mark.apply_async((token, 2.0), queue=queue)
    redis = get_redis()
    wait_for(lambda: redis.get(key("test-slow", token, "started")))
    first.kill()  # SIGKILL to the whole process group, mid-task
    assert redis.get(key("test-slow", token, "completions")) is None

    celery_worker_factory(**env)
    wait_for(lambda: redis.get(key("test-slow", token, "completions")), timeout=60)
    assert int(redis.get(key("test-slow", token, "started"))) >= 2  # it really ran again
    assert int(redis.get(key("test-slow", token, "completions"))) == 1


def test_the_web_process_keeps_what_it_loaded_at_start_out_of_the_collectors_sight():
    """A full collection walked Django, the SDK's types and the app each time: 160-200 ms of a
    worker's event loop, every stream stalled, at the start of a burst of replies."""
    import os
    import subprocess
    import sys

    code = (
        "import gc, claudeapp.asgi; "
        "print(gc.get_freeze_count(), sum(gc.get_count()), len(gc.get_objects()))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "claudeapp.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    frozen, young, tracked = (int(n) for n in out)
    assert frozen > 50_000  # everything loaded by then (about 95,000 objects)
    assert tracked < frozen / 10  # what the collector still walks: what came after
    assert young < 1_000
