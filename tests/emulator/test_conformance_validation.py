"""Each validation rule answers with the real error shape and the SDK's matching exception."""

from __future__ import annotations

import anthropic
import pytest
from anthropic.types import Message

HI = [{"role": "user", "content": "hi"}]
TOOL = {
    "name": "lookup",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
}


def base(**over):
    return {"model": "claude-opus-5-5", "max_tokens": 100, "messages": HI, **over}


def marked(n, ttl=None):
    cc = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
    return {"type": "text", "text": f"block {n}", "cache_control": cc}


def raw_post(sdk, body, path="/v1/messages", **options):
    """Send a body the typed SDK methods would refuse to build, through the SDK's own client."""
    return sdk.post(path, cast_to=Message, body=body, options=options)


HAIKU = "claude-haiku-4-5"
V23, V26 = "2023-06-01", "2026-10-21"
DOC = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}
CITED = {
    "type": "text",
    "text": "quoted",
    "citations": [
        {
            "type": "char_location",
            "cited_text": "q",
            "document_index": 0,
            "document_title": None,
            "start_char_index": 0,
            "end_char_index": 1,
        }
    ],
}
BMP = {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "AA=="}}
ENABLED_2000 = {"type": "enabled", "budget_tokens": 2000}


def user(*blocks):
    return [{"role": "user", "content": list(blocks)}]


def tool_turns(use_id, answer):
    use = {"type": "tool_use", "id": use_id, "name": "lookup", "input": {}}
    return [*HI, {"role": "assistant", "content": [use]}, {"role": "user", "content": answer}]


# (id, body, api-version, expected message fragment)
BAD_REQUESTS = [
    ("missing-max-tokens", {"model": "claude-opus-5-5", "messages": HI}, None,
     "max_tokens: Field required"),
    ("mistyped-max-tokens", base(max_tokens="ten"), None,
     "max_tokens: Input should be a valid integer"),
    ("missing-messages", {"model": "claude-opus-5-5", "max_tokens": 5}, None,
     "messages: Field required"),
    ("empty-messages", base(messages=[]), None, "at least one message"),
    ("bad-role", base(messages=[{"role": "robot", "content": "x"}]), None, "messages.0.role"),
    ("mistyped-content", base(messages=[{"role": "user", "content": 5}]), None,
     "messages.0.content"),
    ("unknown-block", base(messages=user({"type": "video"})), None, "Input tag 'video'"),
    ("empty-text", base(messages=user({"type": "text", "text": ""})), None, "non-empty"),
    ("extra-field", base(foo=1), None, "foo: Extra inputs are not permitted"),
    ("output-format-wire-param", base(output_format={"type": "json_schema"}), None,
     "output_format: Extra inputs"),
    ("max-tokens-over-model-max", base(model=HAIKU, max_tokens=70_000), None,
     "max_tokens: 70000 > 64000"),
    ("forced-tool-choice-refused", base(tools=[TOOL], tool_choice={"type": "any"}), None,
     "forcing tool use"),
    ("forced-tool-name-unknown",
     base(model=HAIKU, tools=[TOOL], tool_choice={"type": "tool", "name": "nope"}), None,
     "Tool 'nope' not found"),
    ("thinking-enabled-on-adaptive-only", base(thinking=ENABLED_2000, max_tokens=4000), None,
     "'enabled' is not supported"),
    ("thinking-disabled-on-always-on", base(thinking={"type": "disabled"}), None,
     "'disabled' is not supported"),
    ("thinking-adaptive-on-budget-model", base(model=HAIKU, thinking={"type": "adaptive"}), None,
     "'adaptive' is not supported"),
    ("thinking-budget-below-1024",
     base(model=HAIKU, thinking={"type": "enabled", "budget_tokens": 500}), None,
     "greater than or equal to 1024"),
    ("thinking-budget-not-below-max-tokens",
     base(model=HAIKU, max_tokens=2000, thinking=ENABLED_2000), None,
     "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ("thinking-with-forced-tool",
     base(model=HAIKU, max_tokens=3000, tools=[TOOL], tool_choice={"type": "any"},
          thinking=ENABLED_2000), None, "Thinking may not be enabled"),
    ("temperature-under-2026", base(model=HAIKU, temperature=0.5), V26,
     "temperature: sampling parameters"),
    ("top-k-under-2026", base(model=HAIKU, top_k=5), V26, "top_k"),
    ("temperature-on-model-without-sampling", base(temperature=0.5), V23,
     "`temperature` is deprecated for this model."),
    ("temperature-and-top-p", base(model=HAIKU, temperature=0.5, top_p=0.9), V23,
     "cannot both be specified"),
    ("prefill-refused", base(messages=[*HI, {"role": "assistant", "content": "Sure"}]), None,
     "Prefilling assistant messages is not supported for this model."),
    ("five-cache-breakpoints", base(system=[marked(i) for i in range(5)]), None,
     "A maximum of 4 blocks with cache_control may be provided. Found 5."),
    ("five-minutes-before-one-hour", base(system=[marked(0, "5m"), marked(1, "1h")]), None,
     "ttl='1h' cache_control block must not"),
    ("document-in-assistant-under-2026",
     base(model="claude-opus-4-5", messages=[*HI, {"role": "assistant", "content": [DOC]},
                                             {"role": "user", "content": "ok"}]), V26,
     "document blocks are not allowed"),
    ("citations-in-user-text-under-2026", base(messages=user(CITED)), V26,
     "citations are not allowed in user messages"),
    ("tool-use-without-result", base(model=HAIKU, tools=[TOOL], messages=tool_turns("t1", "?")),
     None, "without `tool_result` blocks"),
    ("tool-result-without-use",
     base(messages=user({"type": "tool_result", "tool_use_id": "toolu_9", "content": "42"})),
     None, "unexpected `tool_use_id`"),
    ("whitespace-stop-sequence", base(stop_sequences=["  "]), None, "non-whitespace"),
    ("effort-on-model-without-effort", base(model=HAIKU, output_config={"effort": "high"}), None,
     "effort is not supported"),
    ("bad-image-media-type", base(messages=user(BMP)), None, "media_type"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "version", "fragment"),
    [pytest.param(b, v, f, id=i) for i, b, v, f in BAD_REQUESTS],
)
def test_bad_request(sdk, body, version, fragment):
    options = {"headers": {"anthropic-version": version}} if version else {}
    with pytest.raises(anthropic.BadRequestError) as err:
        raw_post(sdk, body, timeout=30, **options)
    assert err.value.status_code == 400
    assert err.value.type == "invalid_request_error"
    assert fragment in err.value.api_message
    assert err.value.body["request_id"] == err.value.request_id


def test_sampling_is_accepted_under_2023_on_models_that_still_take_it(sdk):
    msg = raw_post(
        sdk,
        base(model="claude-haiku-4-5", temperature=0.2, top_k=5),
        headers={"anthropic-version": "2023-06-01"},
    )
    assert msg.content[0].text.startswith("[offline emulator]")


def test_unknown_model_is_not_found(sdk):
    with pytest.raises(anthropic.NotFoundError) as err:
        sdk.messages.create(model="claude-imaginary-9", max_tokens=10, messages=HI)
    assert err.value.type == "not_found_error"
    assert "claude-imaginary-9" in err.value.api_message
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.count_tokens(model="claude-imaginary-9", messages=HI)
    with pytest.raises(anthropic.NotFoundError):
        sdk.models.retrieve("claude-imaginary-9")


def test_prompt_over_the_context_window(sdk):
    long_text = "a " * 200_001  # one token per "a": just over claude-haiku-4-5's 200K window
    kw = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": long_text}]}
    with pytest.raises(anthropic.BadRequestError) as err:
        sdk.messages.create(max_tokens=10, **kw)
    assert "prompt is too long" in err.value.api_message
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.count_tokens(**kw)
    # The same prompt fits a 1M-token model.
    assert sdk.messages.count_tokens(model="claude-opus-5-5", messages=kw["messages"]).input_tokens


def test_malformed_json(sdk):
    with pytest.raises(anthropic.BadRequestError) as err:
        sdk.post(
            "/v1/messages",
            cast_to=Message,
            content=b'{"model": "claude-opus-5-5", "max_tokens": ',
            options={"headers": {"content-type": "application/json"}},
        )
    assert "error parsing the body" in err.value.api_message


def test_oversized_body_is_request_too_large(sdk):
    huge = "x" * (32 * 1024 * 1024 + 10)
    with pytest.raises(anthropic.RequestTooLargeError) as err:
        sdk.messages.create(
            model="claude-opus-5-5", max_tokens=10, messages=[{"role": "user", "content": huge}]
        )
    assert err.value.status_code == 413
    assert err.value.type == "request_too_large"
    assert isinstance(err.value, anthropic.ContentTooLargeError)


def test_missing_or_unknown_api_version(emulator):
    with (
        emulator.client(
            max_retries=0, default_headers={"anthropic-version": anthropic.Omit()}
        ) as c,
        pytest.raises(anthropic.BadRequestError) as err,
    ):
        c.messages.create(model="claude-opus-5-5", max_tokens=10, messages=HI)
    assert "anthropic-version" in err.value.api_message
    bad = {"anthropic-version": "1999-01-01"}
    with (
        emulator.client(max_retries=0, default_headers=bad) as c,
        pytest.raises(anthropic.BadRequestError),
    ):
        c.models.list()


def test_count_tokens_rejects_sampling_under_2026(sdk):
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.count_tokens(
            model="claude-haiku-4-5", messages=HI, extra_body={"temperature": 0.3}
        )
