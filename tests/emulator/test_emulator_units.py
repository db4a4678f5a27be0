"""The emulator's pure parts: token counting, schema-valid generation, the model table."""

from __future__ import annotations

import base64
import json
import struct
from typing import Literal

import anthropic
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from emulator import models_table
from emulator.faults import FaultStore, parse_fault
from emulator.model import generate_reply
from emulator.structured import Context, choose_label, generate, violate
from emulator.tokens import (
    MESSAGE_OVERHEAD,
    Segment,
    block_tokens,
    count_request_tokens,
    image_tokens_for_size,
    output_pieces,
    request_segments,
    text_tokens,
)

# --- tokens -------------------------------------------------------------------------------------


def test_text_tokens_rule():
    assert text_tokens("") == 0
    assert text_tokens("Hello, world!") == 4
    assert text_tokens("classification") == 2  # word pieces of at most 8 characters
    assert text_tokens("  a   b  ") == 2  # whitespace is free


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_output_pieces_rebuild_the_text_one_token_each(text):
    pieces = output_pieces(text)
    assert "".join(pieces) == text
    if text.strip():
        assert len(pieces) == text_tokens(text)


TOOL = {"name": "t", "description": "d", "input_schema": {"type": "object"}}
BODY = {
    "tools": [TOOL],
    "system": "be brief",
    "messages": [
        {"role": "user", "content": "hello there"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "tool_use", "id": "x", "name": "t", "input": {"a": 1}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "1"}]},
    ],
}


def test_segments_order_kinds_and_exact_sum():
    segs = request_segments(BODY)
    assert [s.kind for s in segs] == ["tool", "system", "text", "text", "tool_use", "tool_result"]
    assert all(isinstance(s, Segment) for s in segs)
    assert count_request_tokens(BODY) == sum(s.tokens for s in segs)
    # role overhead sits on the first block of each message only
    assert segs[2].tokens == text_tokens("hello there") + MESSAGE_OVERHEAD
    assert segs[4].tokens == block_tokens(BODY["messages"][1]["content"][1])  # no overhead
    assert segs[3].tokens == text_tokens("hi") + MESSAGE_OVERHEAD


def test_fingerprints_ignore_cache_control_and_string_form_but_not_role():
    plain = request_segments({"messages": [{"role": "user", "content": "same"}]})[0]
    marked = request_segments(
        {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "same", "cache_control": {"type": "ephemeral"}}]}]}
    )[0]  # fmt: skip
    other_role = request_segments({"messages": [{"role": "assistant", "content": "same"}]})[0]
    assert plain.fingerprint == marked.fingerprint
    assert marked.cache_control == {"type": "ephemeral"} and plain.cache_control is None
    assert plain.tokens == marked.tokens
    assert other_role.fingerprint != plain.fingerprint


def _png(width, height):
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + struct.pack(">II", width, height)
    return base64.b64encode(header + b"\x08\x02\x00\x00\x00" + b"\x00" * 64).decode()


def test_image_tokens_from_pixel_size():
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": _png(1000, 500)}}  # fmt: skip
    body = {"messages": [{"role": "user", "content": [block]}]}
    assert request_segments(body)[0].tokens == 667 + MESSAGE_OVERHEAD  # ceil(1000*500/750)
    assert image_tokens_for_size(8000, 8000) <= 1600  # downscaled like the API does


# --- structured output ----------------------------------------------------------------------------


class Address(BaseModel):
    street: str
    zip_code: str = Field(min_length=5, max_length=5)


class Invoice(BaseModel):
    kind: Literal["invoice", "contract", "other"]
    total: float = Field(ge=0, le=1000)
    lines: list[int] = Field(min_length=2, max_length=4)
    paid: bool
    address: Address
    billing: Address | None = None
    notes: list[Address] = Field(default_factory=list, max_length=1)
    score: int = Field(gt=0, lt=3)


SCHEMAS = [
    Invoice.model_json_schema(),
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b", "c"]},
                                               "uniqueItems": True, "minItems": 2}}},
    {"type": "array", "items": {"type": "number", "multipleOf": 0.5, "minimum": 1, "maximum": 2}},
    {"type": ["string", "null"], "format": "date-time"},
    {"oneOf": [{"const": "yes", "description": "approve"}, {"const": "no", "description": "deny"}]},
    {"type": "object", "additionalProperties": False, "properties": {
        "id": {"type": "string", "format": "uuid"}, "n": {"type": "integer", "multipleOf": 7,
                                                          "minimum": 10}}},
]  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("text", ["", "invoice payment amount due", "x " * 50])
def test_generated_values_validate(schema, text):
    value = generate(schema, Context(text, b"salt"))
    jsonschema.validate(value, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(violate(schema, value), schema)


def test_labels_are_chosen_by_words_with_descriptions_and_hash_ties():
    ctx = Context("Please pay the outstanding invoice: payment amount due", b"s")
    assert choose_label(["contract", "invoice", "other"], {}, ctx) == "invoice"
    descs = {"billing": "money owed, amounts and payments", "legal": "contracts and clauses"}
    assert choose_label(["legal", "billing"], descs, ctx) == "billing"
    # No evidence either way: a hash decides, stably, and not always the first label.
    picks = {choose_label(["alpha", "beta", "gamma"], {}, Context("nothing", bytes([i])))
             for i in range(12)}  # fmt: skip
    assert len(picks) > 1
    again = {choose_label(["alpha", "beta", "gamma"], {}, Context("nothing", bytes([i])))
             for i in range(12)}  # fmt: skip
    assert picks == again


def test_enum_descriptions_are_read_from_the_schema_description():
    described = {
        "enum": ["A", "B"],
        "description": "A: about cooking and recipes\nB: about cars and engines",
    }
    schema = {"type": "object", "required": ["label"], "properties": {"label": described}}
    value = generate(schema, Context("my engine makes a noise when the car starts", b""))
    assert value == {"label": "B"}


def test_reply_is_deterministic_and_seeded():
    messages = [{"role": "user", "content": "x y"}]
    body = {"model": "claude-opus-5-5", "max_tokens": 500, "messages": messages}
    assert generate_reply(body, 0).content == generate_reply(body, 0).content
    assert generate_reply(body, 0).content != generate_reply(body, 1).content


# --- model table ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", models_table.MODELS, ids=lambda m: m.id)
def test_model_info_validates_as_the_sdk_type(spec):
    info = anthropic.types.ModelInfo.model_validate(spec.info())
    assert info.id == spec.id
    assert info.max_tokens == spec.max_output and info.max_input_tokens == spec.context_window
    json.dumps(spec.info())  # JSON-serialisable as is


def test_table_facts_from_section_k():
    r = models_table.resolve
    assert r("claude-haiku-4-5-20251001") is r("claude-haiku-4-5")
    assert r("claude-sonnet-4-5").lifecycle == "deprecated"
    assert not r("claude-opus-5-5").forced_tool_choice and r("claude-haiku-4-5").forced_tool_choice
    assert r("claude-sonnet-5-5").thinking == {"adaptive", "between_tools"}
    assert r("claude-opus-4-5").prefill and not r("claude-opus-4-6").prefill
    assert r("claude-sonnet-4-6").sampling and not r("claude-haiku-5-5").sampling
    assert r("claude-fable-5-1").prices.input == 10
    assert r("claude-mythos-preview") is None


# --- faults ---------------------------------------------------------------------------------------


def test_fault_matching_rules():
    store = FaultStore(seed=1)
    store.add([
        {"kind": "status", "path": "/v1/models*"},
        {"kind": "refusal", "model": "claude-haiku-4-5"},
        {"kind": "early_end", "header": {"name": "X-Run", "value": "7"}},
    ])  # fmt: skip
    assert store.take("/v1/messages", None, {}, {"status"}) is None
    assert store.take("/v1/models/abc", None, {}, {"status"}).kind == "status"
    assert store.take("/v1/messages", "claude-opus-5-5", {}, {"refusal"}) is None
    assert (
        store.take("/v1/messages", "claude-haiku-4-5-20251001", {}, {"refusal"}).kind == "refusal"
    )
    assert store.take("/v1/messages", None, {"x-run": "8"}, {"early_end"}) is None
    assert store.take("/v1/messages", None, {"x-run": "7"}, {"early_end"}).kind == "early_end"
    assert len(store) == 0
    with pytest.raises(ValueError, match="kind"):
        parse_fault({"kind": "nope"})
