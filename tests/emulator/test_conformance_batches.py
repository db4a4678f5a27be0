"""Message Batches over HTTP with the official SDK in strict mode (reference section E)."""

from __future__ import annotations

import asyncio

import anthropic
import pytest
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from tests.emulator.support import strict, text_of, wait_ended

MODEL = "claude-haiku-5-5"


def line(custom_id: str, text: str = "Summarise the tides.", **params) -> dict:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 200,
            "messages": [{"role": "user", "content": f"{text} ({custom_id})"}],
            **params,
        },
    }


@pytest.fixture
def emu(emulator_clean):
    emulator_clean.config(batch_seconds=0.3)
    return emulator_clean


@pytest.fixture
def client(emu):
    with emu.client(max_retries=0) as c:
        yield c


def results(client, batch_id: str) -> dict[str, MessageBatchIndividualResponse]:
    """The results by custom_id, each line also validated strictly (``results()`` itself builds
    lines without validation)."""
    out = {}
    for item in client.messages.batches.results(batch_id):
        out[item.custom_id] = strict(MessageBatchIndividualResponse, item.to_dict(mode="json"))
    return out


def test_every_batch_path_through_the_sdk(emu, client):
    bad = line("bad", model="claude-nope")  # validated when processed: an errored line
    batch = client.messages.batches.create(requests=[line("a"), bad, line("c")])
    assert isinstance(batch, MessageBatch)
    assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
    counts = batch.request_counts
    assert (counts.processing, counts.succeeded, counts.errored) == (3, 0, 0)
    assert batch.results_url is None and batch.ended_at is None
    assert (batch.expires_at - batch.created_at).total_seconds() == 24 * 3600
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        client.messages.batches.results(batch.id)
    with pytest.raises(anthropic.BadRequestError, match="cannot be deleted"):
        client.messages.batches.delete(batch.id)

    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert (counts.processing, counts.succeeded, counts.errored) == (0, 2, 1)
    assert (counts.canceled, counts.expired) == (0, 0)
    # results_url points at the emulator itself, so results() fetches from it.
    assert ended.results_url == f"{emu.url}/v1/messages/batches/{batch.id}/results"
    assert ended.ended_at >= ended.created_at

    lines = results(client, batch.id)
    assert list(lines) == ["a", "bad", "c"]
    for custom_id in ("a", "c"):
        result = lines[custom_id].result
        assert result.type == "succeeded"
        message = result.message
        assert message.model == MODEL and message.stop_reason == "end_turn"
        assert text_of(message).startswith("[offline emulator]") and custom_id in text_of(message)
        assert message.usage.service_tier == "batch"
        sent = line(custom_id)["params"]["messages"]
        count = client.messages.count_tokens(model=MODEL, messages=sent)
        assert message.usage.input_tokens == count.input_tokens
    error = lines["bad"].result
    assert error.type == "errored"
    assert error.error.error.type == "not_found_error"
    assert "claude-nope" in error.error.error.message
    assert error.error.request_id.startswith("req_")

    deleted = client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.delete(batch.id)
    stats = emu.stats()["batches"]
    assert (stats["created"], stats["ended"], stats["deleted"]) == (1, 1, 1)
    assert stats["requests"]["succeeded"] == 2 and stats["requests"]["errored"] == 1


def test_a_line_is_validated_under_the_api_version_of_its_create(emu):
    # Haiku 4.5 takes temperature under 2023-06-01 only.
    sampled = line("t", model="claude-haiku-4-5", temperature=0.5)
    with emu.client(max_retries=0) as c26:
        batch_26 = c26.messages.batches.create(requests=[sampled])
    old = {"anthropic-version": "2023-06-01"}
    with emu.client(max_retries=0, default_headers=old) as c23:
        batch_23 = c23.messages.batches.create(requests=[sampled])
    with emu.client(max_retries=0) as c:
        wait_ended(c, batch_26.id), wait_ended(c, batch_23.id)
        (under_26,) = results(c, batch_26.id).values()
        (under_23,) = results(c, batch_23.id).values()
    assert under_26.result.type == "errored"
    assert under_26.result.error.error.type == "invalid_request_error"
    assert "temperature" in under_26.result.error.error.message
    assert under_23.result.type == "succeeded"


def test_a_streaming_line_is_an_errored_line(emu, client):
    batch = client.messages.batches.create(requests=[line("s", stream=True)])
    wait_ended(client, batch.id)
    (result,) = results(client, batch.id).values()
    assert result.result.type == "errored"
    assert "stream" in result.result.error.error.message


def test_list_is_newest_first_and_pages(emu, client):
    ids = [client.messages.batches.create(requests=[line(f"r{i}")]).id for i in range(5)]
    newest_first = ids[::-1]
    assert [b.id for b in client.messages.batches.list(limit=2)] == newest_first  # 3 pages
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2]
    assert page.has_more and (page.first_id, page.last_id) == (newest_first[0], newest_first[1])
    assert page.has_next_page()
    second = page.get_next_page()
    assert [b.id for b in second.data] == newest_first[2:4]
    last = client.messages.batches.list(limit=2, after_id=newest_first[3])
    assert [b.id for b in last.data] == newest_first[4:] and not last.has_more
    # before_id pages towards newer batches: the ones just before it in the list.
    before = client.messages.batches.list(limit=2, before_id=newest_first[3])
    assert [b.id for b in before.data] == newest_first[1:3] and before.has_more
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.list(limit=1001)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.list(after_id="msgbatch_nope")


def test_cancel_gives_canceled_lines(emu, client):
    emu.config(batch_seconds=30)
    batch = client.messages.batches.create(requests=[line("a"), line("b"), line("c")])
    canceled = client.messages.batches.cancel(batch.id)
    assert canceled.processing_status == "canceling"
    assert canceled.cancel_initiated_at is not None
    assert canceled.request_counts.processing == 3
    ended = wait_ended(client, batch.id)  # long before its 30 s
    assert ended.request_counts.canceled == 3 and ended.request_counts.processing == 0
    assert [r.result.type for r in results(client, batch.id).values()] == ["canceled"] * 3
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    # A batch that ended on its own can no longer be canceled.
    emu.config(batch_seconds=0)
    finished = wait_ended(client, client.messages.batches.create(requests=[line("x")]).id)
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        client.messages.batches.cancel(finished.id)
    assert emu.stats()["batches"]["canceled"] == 1


def test_batch_line_faults_make_lines_error_or_expire(emu, client):
    emu.faults(
        [
            {"kind": "batch_line", "result": "errored"},  # the default path matches lines too
            {"kind": "batch_line", "path": "/v1/messages*", "result": "expired"},
        ]
    )
    batch = client.messages.batches.create(requests=[line("a"), line("b"), line("c")])
    ended = wait_ended(client, batch.id)
    counts = ended.request_counts
    assert (counts.errored, counts.expired, counts.succeeded) == (1, 1, 1)
    lines = results(client, batch.id)
    assert [r.result.type for r in lines.values()] == ["errored", "expired", "succeeded"]
    assert lines["a"].result.error.error.type == "api_error"
    assert emu.stats()["faults"] == {"batch_line": 2}
    assert emu.pending_faults() == []


def test_batch_line_faults_match_model_and_the_creating_requests_headers(emu):
    emu.faults(
        [
            {"kind": "batch_line", "result": "errored", "model": "claude-haiku-4-5"},
            {"kind": "batch_line", "result": "expired", "header": {"name": "X-Run", "value": "7"}},
        ]
    )
    with emu.client(max_retries=0, default_headers={"x-run": "8"}) as other:
        first = other.messages.batches.create(
            requests=[line("a"), line("b", model="claude-haiku-4-5-20251001")]
        )
    with emu.client(max_retries=0, default_headers={"x-run": "7"}) as scoped:
        second = scoped.messages.batches.create(requests=[line("c")])
        wait_ended(scoped, first.id), wait_ended(scoped, second.id)
        assert [r.result.type for r in results(scoped, first.id).values()] == [
            "succeeded",
            "errored",
        ]
        assert [r.result.type for r in results(scoped, second.id).values()] == ["expired"]


def test_drop_after_effect_on_create_leaves_the_batch(emu, client):
    emu.faults([{"kind": "drop_after_effect", "path": "/v1/messages/batches"}])
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.batches.create(requests=[line("a")])
    # The batch was created (durably) before the connection dropped: the caller can find it.
    (found,) = client.messages.batches.list().data
    assert found.request_counts.processing == 1
    assert wait_ended(client, found.id).request_counts.succeeded == 1
    stats = emu.stats()
    assert stats["batches"]["created"] == 1
    assert stats["requests"]["POST /v1/messages/batches dropped"] == 1


@pytest.mark.parametrize(
    ("requests", "fragment"),
    [
        pytest.param([], "at least 1 item", id="no-requests"),
        pytest.param([{**line("x"), "custom_id": ""}], "at least 1 character", id="empty-id"),
        pytest.param([{**line("x"), "custom_id": "a" * 65}], "at most 64", id="long-id"),
        pytest.param([{**line("x"), "custom_id": "a b"}], "should match pattern", id="bad-chars"),
        pytest.param([line("same"), line("same")], "Duplicate custom_id", id="duplicate-id"),
        pytest.param([{"custom_id": "x"}], "params: Field required", id="no-params"),
    ],
)
def test_create_limits_are_real_400s(client, requests, fragment):
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.batches.create(requests=requests)
    assert err.value.type == "invalid_request_error"
    assert fragment in err.value.api_message


def test_a_64_character_custom_id_is_fine(client):
    batch = client.messages.batches.create(requests=[{**line("x"), "custom_id": "a" * 64}])
    assert batch.request_counts.processing == 1


def test_lowered_limits_give_the_real_errors(emu, client):
    emu.config(batch_max_requests=3)
    with pytest.raises(anthropic.BadRequestError, match="at most 3 items"):
        client.messages.batches.create(requests=[line(f"r{i}") for i in range(4)])
    assert client.messages.batches.create(requests=[line(f"r{i}") for i in range(3)])
    # Over the byte limit (256 MB for real) the body is refused before it is read: a 413.
    emu.config(batch_max_bytes=2000)
    with pytest.raises(anthropic.RequestTooLargeError) as err:
        client.messages.batches.create(requests=[line("big", text="word " * 500)])
    assert err.value.status_code == 413
    assert emu.stats()["batches"]["created"] == 1


def test_batches_through_the_async_client(emu):
    async def main():
        async with emu.async_client(max_retries=0) as c:
            batch = await c.messages.batches.create(requests=[line("a"), line("b")])
            while (await c.messages.batches.retrieve(batch.id)).processing_status != "ended":
                await asyncio.sleep(0.05)
            listed = [b.id async for b in c.messages.batches.list(limit=1)]
            got = [r async for r in await c.messages.batches.results(batch.id)]
            return batch, listed, got

    batch, listed, got = asyncio.run(main())
    assert listed == [batch.id]
    assert [(r.custom_id, r.result.type) for r in got] == [("a", "succeeded"), ("b", "succeeded")]


def test_a_restart_with_state_dir_mid_batch_ends_the_batch_and_serves_it(
    emulator_factory, tmp_path
):
    emu = emulator_factory("--state-dir", str(tmp_path), "--batch-seconds", "5")
    with emu.client(max_retries=0) as c:
        emu.config(batch_seconds=0)
        done = c.messages.batches.create(requests=[line("c")])
        wait_ended(c, done.id)
        emu.config(batch_seconds=5)
        batch = c.messages.batches.create(requests=[line("a"), line("b", model="claude-nope")])
        assert emu.stop() == 0  # mid-batch: `batch` ends 5 s after its create
        emu.start()  # same port, same state dir
        assert emu.config()["batch_seconds"] == 5.0
        reopened = c.messages.batches.retrieve(batch.id)
        assert (reopened.id, reopened.created_at) == (batch.id, batch.created_at)
        assert reopened.processing_status == "in_progress"
        assert reopened.request_counts.processing == 2
        ended = wait_ended(c, batch.id)
        assert ended.request_counts.succeeded == 1 and ended.request_counts.errored == 1
        # Its deadline was fixed at create, so the restart did not push it back.
        assert (ended.ended_at - ended.created_at).total_seconds() == pytest.approx(5, abs=0.01)
        assert ended.results_url.startswith(emu.url)
        got = {r.custom_id: r.result.type for r in c.messages.batches.results(batch.id)}
        assert got == {"a": "succeeded", "b": "errored"}
        wait_ended(c, done.id)
        # Ended batches and their results survive another restart unchanged.
        before = [r.to_dict() for r in c.messages.batches.results(done.id)]
        emu.stop()
        emu.start()
        assert [r.to_dict() for r in c.messages.batches.results(done.id)] == before
        assert [b.id for b in c.messages.batches.list()] == [batch.id, done.id]
