"""Unit tests of emulator/batches.py, checked against the SDK's own batch types."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import anthropic
import httpx2
import pytest
from anthropic._models import BaseModel
from anthropic.types.messages import (
    DeletedMessageBatch,
    MessageBatch,
    MessageBatchIndividualResponse,
)

from emulator.batches import (
    EXPIRES_AFTER_SECONDS,
    BatchError,
    BatchStore,
    error_result,
    results_url,
    rfc3339,
)

BASE = "http://127.0.0.1:4010"
T0 = 1_800_000_000.0


def strict(model_cls, obj):
    """Validate like the SDK in strict mode, and also refuse fields the type does not have
    (the SDK's models accept extras silently, which would hide a misspelt field)."""
    instance = model_cls.model_validate_json(json.dumps(obj), strict=True)
    _no_extras(instance)
    return instance


def _no_extras(value):
    if isinstance(value, BaseModel):
        assert not value.model_extra, f"{type(value).__name__} extras: {value.model_extra}"
        for name in type(value).model_fields:
            _no_extras(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            _no_extras(item)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def message_for(custom_id: str, params: dict) -> dict:
    return {
        "id": f"msg_{custom_id}",
        "type": "message",
        "role": "assistant",
        "model": params.get("model", "claude-haiku-4-5"),
        "content": [{"type": "text", "text": f"reply to {custom_id}"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 5,
            "output_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "batch",
        },
    }


class FakeModel:
    """Stands in for part 1's model: a request without max_tokens is invalid."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.contexts: list[dict] = []

    def __call__(self, custom_id: str, params: dict, context: dict) -> dict:
        self.calls.append(custom_id)
        self.contexts.append(context)
        if "max_tokens" not in params:
            return error_result("invalid_request_error", "max_tokens: Field required")
        return {"type": "succeeded", "message": message_for(custom_id, params)}


def reqs(n: int, bad: tuple[int, ...] = ()) -> list[dict]:
    out = []
    for i in range(n):
        params = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}
        if i not in bad:
            params["max_tokens"] = 10
        out.append({"custom_id": f"req-{i}", "params": params})
    return out


def make_store(tmp_path: Path | None = None, seconds: float = 60.0, **kw) -> tuple:
    clock = Clock()
    model = FakeModel()
    store = BatchStore(str(tmp_path) if tmp_path else None, seconds, clock, process=model, **kw)
    return store, clock, model


def lines(store: BatchStore, batch_id: str) -> list[MessageBatchIndividualResponse]:
    return [
        strict(MessageBatchIndividualResponse, json.loads(b)) for b in store.results_lines(batch_id)
    ]


# -- lifecycle -------------------------------------------------------------------------


def test_create_returns_an_in_progress_batch_of_the_sdk_shape():
    store, _, _ = make_store()
    batch = strict(MessageBatch, store.create(reqs(3), base_url=BASE))
    assert re.fullmatch(r"msgbatch_01[A-Za-z0-9]{22}", batch.id)
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3
    assert batch.request_counts.succeeded == 0
    assert batch.results_url is None and batch.ended_at is None
    assert (batch.expires_at - batch.created_at).total_seconds() == EXPIRES_AFTER_SECONDS


def test_timestamps_are_rfc3339_with_z():
    assert rfc3339(0.5) == "1970-01-01T00:00:00.500000Z"


def test_counts_stay_processing_until_the_deadline_and_nothing_runs_early():
    store, clock, model = make_store(seconds=30)
    created = store.create(reqs(2, bad=(1,)))
    clock.now += 29.9
    assert store.retrieve(created["id"])["request_counts"]["processing"] == 2
    assert model.calls == []


def test_batch_ends_at_its_deadline_with_counts_and_results_url():
    store, clock, model = make_store(seconds=30)
    created = store.create(reqs(3, bad=(1,)))
    clock.now += 45
    batch = strict(MessageBatch, store.retrieve(created["id"], base_url=BASE))
    assert batch.processing_status == "ended"
    assert batch.request_counts.model_dump() == {
        "processing": 0,
        "succeeded": 2,
        "errored": 1,
        "canceled": 0,
        "expired": 0,
    }
    assert batch.ended_at.timestamp() == pytest.approx(T0 + 30)
    assert batch.results_url == f"{BASE}/v1/messages/batches/{created['id']}/results"
    store.retrieve(created["id"])
    assert model.calls == ["req-0", "req-1", "req-2"]  # processed once


def test_results_are_jsonl_of_individual_responses_with_errored_lines():
    store, clock, _ = make_store(seconds=1)
    created = store.create(reqs(3, bad=(2,)))
    clock.now += 1
    raw = list(store.results_lines(created["id"]))
    assert all(line.endswith(b"\n") for line in raw)
    parsed = lines(store, created["id"])
    assert [p.custom_id for p in parsed] == ["req-0", "req-1", "req-2"]
    assert parsed[0].result.type == "succeeded"
    assert parsed[0].result.message.content[0].text == "reply to req-0"
    assert parsed[2].result.type == "errored"
    assert parsed[2].result.error.error.type == "invalid_request_error"
    assert parsed[2].result.error.error.message == "max_tokens: Field required"
    assert b"".join(store.results_chunks(created["id"], max_bytes=10)) == b"".join(raw)


def test_results_before_the_end_are_refused():
    store, _, _ = make_store()
    created = store.create(reqs(1))
    with pytest.raises(BatchError) as err:
        list(store.results_lines(created["id"]))
    assert err.value.status == 400


def test_batch_seconds_can_change_at_run_time():
    store, _, _ = make_store(seconds=3600)
    store.batch_seconds = 0
    created = store.create(reqs(1))
    assert store.retrieve(created["id"])["processing_status"] == "ended"


def test_line_faults_make_lines_error_or_expire():
    faults = {"req-0": "errored", "req-1": "expired"}
    store, clock, model = make_store(
        seconds=1, line_fault=lambda custom_id, params, context: faults.get(custom_id)
    )
    created = store.create(reqs(3))
    clock.now += 2
    parsed = lines(store, created["id"])
    assert [p.result.type for p in parsed] == ["errored", "expired", "succeeded"]
    assert parsed[0].result.error.error.type == "api_error"
    assert model.calls == ["req-2"]
    counts = store.retrieve(created["id"])["request_counts"]
    assert (counts["errored"], counts["expired"], counts["succeeded"]) == (1, 1, 1)


def test_the_create_context_reaches_every_line_and_survives_a_restart(tmp_path):
    store, clock, _ = make_store(tmp_path, seconds=1)
    created = store.create(reqs(2), context={"version": "2023-06-01", "headers": {"x-run": "7"}})
    clock.now += 2
    model = FakeModel()
    restarted = BatchStore(str(tmp_path), 1, clock, process=model)
    restarted.retrieve(created["id"])
    assert model.contexts == [{"version": "2023-06-01", "headers": {"x-run": "7"}}] * 2


def test_a_crashing_model_gives_an_errored_line_not_a_lost_batch():
    def boom(custom_id: str, params: dict, context: dict) -> dict:
        raise RuntimeError("model bug")

    store = BatchStore(None, 0, Clock(), process=boom)
    created = store.create(reqs(1))
    (line,) = lines(store, created["id"])
    assert line.result.type == "errored"
    assert line.result.error.error.type == "api_error"


# -- cancel and delete -----------------------------------------------------------------


def test_cancel_goes_canceling_then_ended_with_unprocessed_lines_canceled():
    store, clock, model = make_store(seconds=100)
    created = store.create(reqs(10))
    clock.now += 40
    canceling = strict(MessageBatch, store.cancel(created["id"]))
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at.timestamp() == pytest.approx(T0 + 40)
    assert canceling.request_counts.processing == 10
    ended = strict(MessageBatch, store.retrieve(created["id"]))
    assert ended.processing_status == "ended"
    assert ended.request_counts.succeeded == 4
    assert ended.request_counts.canceled == 6
    assert [p.result.type for p in lines(store, created["id"])] == ["succeeded"] * 4 + [
        "canceled"
    ] * 6
    assert len(model.calls) == 4
    # Canceling again returns the batch rather than failing.
    assert store.cancel(created["id"])["processing_status"] == "ended"


def test_cancel_of_a_batch_that_ended_on_its_own_is_refused():
    store, clock, _ = make_store(seconds=1)
    created = store.create(reqs(1))
    clock.now += 2
    with pytest.raises(BatchError) as err:
        store.cancel(created["id"])
    assert err.value.status == 400


def test_delete_only_once_ended():
    store, clock, _ = make_store(seconds=10)
    created = store.create(reqs(1))
    with pytest.raises(BatchError) as err:
        store.delete(created["id"])
    assert (err.value.status, err.value.error_type) == (400, "invalid_request_error")
    clock.now += 10
    deleted = strict(DeletedMessageBatch, store.delete(created["id"]))
    assert deleted.id == created["id"]
    with pytest.raises(BatchError) as gone:
        store.retrieve(created["id"])
    assert (gone.value.status, gone.value.error_type) == (404, "not_found_error")


def test_unknown_batch_is_404():
    store, _, _ = make_store()
    with pytest.raises(BatchError) as err:
        store.retrieve("msgbatch_nope")
    assert err.value.status == 404


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requests", "message"),
    [
        ([], "requests: List should have at least 1 item after validation, not 0"),
        ("x", "requests: Input should be a valid list"),
        ([{"params": {}}], "requests.0.custom_id: Field required"),
        ([{"custom_id": "a"}], "requests.0.params: Field required"),
        (
            [{"custom_id": "", "params": {}}],
            "requests.0.custom_id: String should have at least 1 character",
        ),
        (
            [{"custom_id": "x" * 65, "params": {}}],
            "requests.0.custom_id: String should have at most 64 characters",
        ),
        (
            [{"custom_id": "a b", "params": {}}],
            "requests.0.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'",
        ),
        (
            [{"custom_id": "a", "params": []}],
            "requests.0.params: Input should be a valid dictionary",
        ),
    ],
)
def test_create_rejects_bad_requests_with_a_400(requests, message):
    store, _, _ = make_store()
    with pytest.raises(BatchError) as err:
        store.create(requests)
    assert (err.value.status, err.value.error_type, err.value.message) == (
        400,
        "invalid_request_error",
        message,
    )
    assert store.stats()["created"] == 0


def test_custom_ids_must_be_unique():
    store, _, _ = make_store()
    with pytest.raises(BatchError) as err:
        store.create([{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}])
    assert err.value.message.startswith("requests.1.custom_id: Duplicate custom_id 'a'")


def test_a_64_character_custom_id_is_fine():
    store, _, _ = make_store()
    store.create([{"custom_id": "a" * 64, "params": {}}])


def test_request_limit_is_an_attribute_tests_can_lower():
    store, _, _ = make_store()
    store.max_requests = 3
    store.create(reqs(3))
    with pytest.raises(BatchError) as err:
        store.create(reqs(4))
    assert err.value.message == "requests: List should have at most 3 items after validation, not 4"


# -- list ------------------------------------------------------------------------------


def test_list_is_newest_first_and_pages_with_after_id_and_before_id():
    store, clock, _ = make_store()
    ids = []
    for _ in range(5):
        ids.append(store.create(reqs(1))["id"])
        clock.now += 1
    newest_first = ids[::-1]
    page = store.list(limit=2)
    assert [b["id"] for b in page["data"]] == newest_first[:2]
    assert (page["has_more"], page["first_id"], page["last_id"]) == (True, ids[4], ids[3])
    for batch in page["data"]:
        strict(MessageBatch, batch)
    seen = [b["id"] for b in page["data"]]
    while page["has_more"]:
        page = store.list(limit=2, after_id=page["last_id"])
        seen += [b["id"] for b in page["data"]]
    assert seen == newest_first
    assert page["has_more"] is False
    before = store.list(limit=2, before_id=ids[1])
    assert [b["id"] for b in before["data"]] == [ids[3], ids[2]]
    assert before["has_more"] is True
    assert store.list(limit=2, before_id=before["first_id"])["data"][0]["id"] == ids[4]


@pytest.mark.parametrize("limit", [0, 1001])
def test_list_limit_out_of_range_is_a_400(limit):
    store, _, _ = make_store()
    with pytest.raises(BatchError) as err:
        store.list(limit=limit)
    assert err.value.status == 400


def test_empty_list():
    store, _, _ = make_store()
    assert store.list() == {"data": [], "has_more": False, "first_id": None, "last_id": None}


# -- persistence -----------------------------------------------------------------------


def test_create_is_on_disk_before_it_returns(tmp_path):
    store, _, _ = make_store(tmp_path)
    created = store.create(reqs(2))
    directory = tmp_path / "batches" / created["id"]
    assert json.loads((directory / "meta.json").read_text())["total"] == 2
    assert len((directory / "requests.jsonl").read_text().splitlines()) == 2


def test_restarted_store_ends_an_open_batch_at_its_deadline(tmp_path):
    store, clock, _ = make_store(tmp_path, seconds=30)
    created = store.create(reqs(3, bad=(0,)))
    done = store.create(reqs(1))
    clock.now += 10
    # "Restart": a new store on the same directory, with another batch_seconds.
    clock2 = Clock(T0 + 20)
    model2 = FakeModel()
    restarted = BatchStore(str(tmp_path), 1, clock2, process=model2)
    assert restarted.retrieve(created["id"])["processing_status"] == "in_progress"
    clock2.now = T0 + 30
    batch = strict(MessageBatch, restarted.retrieve(created["id"], base_url=BASE))
    assert batch.processing_status == "ended"
    assert batch.ended_at.timestamp() == pytest.approx(T0 + 30)
    assert [p.result.type for p in lines(restarted, created["id"])] == [
        "errored",
        "succeeded",
        "succeeded",
    ]
    assert {b["id"] for b in restarted.list()["data"]} == {created["id"], done["id"]}
    # Ids created after the restart sort as newer.
    newer = restarted.create(reqs(1))
    assert restarted.list(limit=1)["data"][0]["id"] == newer["id"]


def test_ended_results_and_cancel_survive_a_restart(tmp_path):
    store, clock, _ = make_store(tmp_path, seconds=10)
    ended = store.create(reqs(2))
    canceled = store.create(reqs(4))
    clock.now += 5
    store.cancel(canceled["id"])
    clock.now += 10
    first = list(store.results_lines(ended["id"]))
    restarted = BatchStore(str(tmp_path), 10, clock, process=FakeModel())
    assert list(restarted.results_lines(ended["id"])) == first
    assert restarted.retrieve(canceled["id"])["request_counts"]["canceled"] == 2
    restarted.delete(ended["id"])
    assert not (tmp_path / "batches" / ended["id"]).exists()


def test_half_written_create_is_ignored_on_restart(tmp_path):
    (tmp_path / "batches" / "msgbatch_01half.tmp").mkdir(parents=True)
    store = BatchStore(str(tmp_path), 1, Clock())
    assert store.list()["data"] == []
    assert not (tmp_path / "batches" / "msgbatch_01half.tmp").exists()


# -- stats, reset, worker, scale -------------------------------------------------------


def test_stats_count_batches_and_requests():
    store, clock, _ = make_store(seconds=1)
    a = store.create(reqs(2, bad=(1,)))
    b = store.create(reqs(3))
    store.cancel(b["id"])
    clock.now += 1
    store.process_due()
    store.delete(a["id"])
    stats = store.stats()
    assert stats == {
        "created": 2,
        "ended": 2,
        "canceled": 1,
        "deleted": 1,
        "open": 0,
        "requests": {"total": 5, "succeeded": 1, "errored": 1, "canceled": 3, "expired": 0},
    }


def test_reset_forgets_everything(tmp_path):
    store, _, _ = make_store(tmp_path)
    created = store.create(reqs(1))
    store.reset()
    assert store.list()["data"] == []
    assert store.stats()["created"] == 0
    assert not (tmp_path / "batches" / created["id"]).exists()


def test_background_worker_ends_batches_on_time():
    store = BatchStore(None, 0.05, process=FakeModel())
    store.start_worker(interval=0.01)
    try:
        created = store.create(reqs(2))
        deadline = time.monotonic() + 5
        while store.stats()["ended"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.stats()["ended"] == 1
        assert store.retrieve(created["id"])["processing_status"] == "ended"
    finally:
        store.stop_worker()


def test_ten_thousand_requests_are_cheap(tmp_path):
    store, clock, _ = make_store(tmp_path, seconds=1)
    started = time.perf_counter()
    created = store.create(reqs(10_000))
    clock.now += 1
    n = sum(1 for _ in store.results_chunks(created["id"]))
    elapsed = time.perf_counter() - started
    assert n > 0
    assert store.retrieve(created["id"])["request_counts"]["succeeded"] == 10_000
    assert elapsed < 10, elapsed


# -- through the SDK -------------------------------------------------------------------


def sdk_client(store: BatchStore) -> anthropic.Anthropic:
    """The official SDK in strict mode, routed to the store by a minimal stand-in of the
    batch routes (the real ones live in emulator/app.py)."""

    def handle(request: httpx2.Request) -> httpx2.Response:
        path, method = request.url.path, request.method
        params = request.url.params
        try:
            if path == "/v1/messages/batches" and method == "POST":
                body = json.loads(request.content)
                return httpx2.Response(200, json=store.create(body["requests"], base_url=BASE))
            if path == "/v1/messages/batches" and method == "GET":
                page = store.list(
                    limit=int(params.get("limit", 20)),
                    after_id=params.get("after_id"),
                    before_id=params.get("before_id"),
                    base_url=BASE,
                )
                return httpx2.Response(200, json=page)
            match = re.fullmatch(r"/v1/messages/batches/([^/]+)(/cancel|/results)?", path)
            assert match, path
            batch_id, tail = match.groups()
            if tail == "/cancel":
                return httpx2.Response(200, json=store.cancel(batch_id, base_url=BASE))
            if tail == "/results":
                content = b"".join(store.results_chunks(batch_id))
                return httpx2.Response(200, content=content)
            if method == "DELETE":
                return httpx2.Response(200, json=store.delete(batch_id))
            return httpx2.Response(200, json=store.retrieve(batch_id, base_url=BASE))
        except BatchError as err:
            body = {
                "type": "error",
                "error": {"type": err.error_type, "message": err.message},
                "request_id": "req_test",
            }
            return httpx2.Response(err.status, json=body)

    return anthropic.Anthropic(
        api_key="emulator-key",
        base_url=BASE,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handle)),
        max_retries=0,
        _strict_response_validation=True,
    )


def test_every_batch_path_through_the_strict_sdk():
    store, clock, _ = make_store(seconds=5)
    client = sdk_client(store)
    batch = client.messages.batches.create(requests=reqs(3, bad=(1,)))
    assert batch.processing_status == "in_progress"
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        client.messages.batches.results(batch.id)
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)
    others = [client.messages.batches.create(requests=reqs(1)).id for _ in range(4)]
    listed = [b.id for b in client.messages.batches.list(limit=2)]  # auto-paginates
    assert listed == [*others[::-1], batch.id]
    clock.now += 5
    results = list(client.messages.batches.results(batch.id))
    assert [r.result.type for r in results] == ["succeeded", "errored", "succeeded"]
    assert client.messages.batches.retrieve(batch.id).request_counts.errored == 1
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    fresh = client.messages.batches.create(requests=reqs(2))
    assert client.messages.batches.cancel(fresh.id).processing_status == "canceling"
    assert client.messages.batches.retrieve(fresh.id).request_counts.canceled == 2


def test_results_url_uses_the_given_base():
    assert (
        results_url("http://h:1/", "msgbatch_x")
        == "http://h:1/v1/messages/batches/msgbatch_x/results"
    )
    assert results_url("", "msgbatch_x") == "/v1/messages/batches/msgbatch_x/results"


@pytest.mark.parametrize("durable", [False, True], ids=["memory", "state-dir"])
def test_a_reset_while_a_batch_is_processing_discards_it_cleanly(tmp_path, durable):
    clock = Clock()
    store = BatchStore(str(tmp_path) if durable else None, 1, clock)

    def process(custom_id: str, params: dict, context: dict) -> dict:
        store.reset()  # what /_emulator/reset does from another thread mid-batch
        return FakeModel()(custom_id, params, context)

    store.process = process
    created = store.create(reqs(3))
    clock.now += 2
    assert store.process_due() == 1
    assert store.stats()["ended"] == 0 and store.stats()["requests"]["succeeded"] == 0
    with pytest.raises(BatchError) as err:
        store.retrieve(created["id"])
    assert err.value.status == 404
    if durable:
        assert list((tmp_path / "batches").iterdir()) == []
