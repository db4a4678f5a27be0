"""Structured output from a JSON-Schema dict: params per model strategy, parsing, live calls."""

from __future__ import annotations

import pytest

from claudeapp.claude import CallContext, structured_params, structured_parse
from claudeapp.claude.config import Spec
from claudeapp.claude.structured import STRUCTURED_TOOL
from claudeapp.claude.structured import structured_params as params_for_spec
from claudeapp.models import ModelSpec, UsageRecord

LABELS = ["invoice", "receipt", "contract"]
SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": LABELS},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["label", "confidence"],
}


def message(*blocks: dict, stop_reason: str = "end_turn") -> dict:
    return {"content": list(blocks), "stop_reason": stop_reason}


def test_native_params_close_objects_to_extra_properties():
    params = params_for_spec(SCHEMA, Spec("m", structured_outputs=True))
    schema = params["output_config"]["format"]["schema"]
    assert params["output_config"]["format"]["type"] == "json_schema"
    assert schema["additionalProperties"] is False
    assert "additionalProperties" not in SCHEMA  # the caller's dict is left alone


def test_forced_tool_params_where_native_is_missing():
    spec = Spec("m", structured_outputs=False, forced_tool_choice=True,
                thinking_modes=("adaptive", "disabled"))  # fmt: skip
    params = params_for_spec(SCHEMA, spec)
    assert params["tool_choice"] == {"type": "tool", "name": STRUCTURED_TOOL}
    assert params["tools"][0]["input_schema"] == SCHEMA
    assert params["thinking"] == {"type": "disabled"}


def test_prompt_instructions_when_neither_is_available():
    spec = Spec("m", structured_outputs=False, forced_tool_choice=False)
    assert "JSON Schema" in params_for_spec(SCHEMA, spec)["system_suffix"]


def test_parse_valid_text_and_fenced_text():
    good = '{"label": "receipt", "confidence": 0.9}'
    assert structured_parse(message({"type": "text", "text": good}), SCHEMA).value == {
        "label": "receipt",
        "confidence": 0.9,
    }
    fenced = message({"type": "text", "text": f"```json\n{good}\n```"})
    assert structured_parse(fenced, SCHEMA).ok


def test_parse_returns_errors_instead_of_raising():
    wrong_label = '{"label": "memo", "confidence": 0.5}'
    result = structured_parse(message({"type": "text", "text": wrong_label}), SCHEMA)
    assert result.value is None and result.raw_text == wrong_label
    assert result.error.startswith("schema violation at label")
    not_json = structured_parse(message({"type": "text", "text": "Sure! It is a receipt."}), SCHEMA)
    assert not_json.value is None and not_json.error.startswith("not JSON")
    cut = structured_parse(
        message({"type": "text", "text": '{"label": "rec'}, stop_reason="max_tokens"), SCHEMA
    )
    assert cut.error.startswith("truncated")
    refused = structured_parse(
        message({"type": "text", "text": "I can't help."}, stop_reason="refusal"), SCHEMA
    )
    assert refused.error.startswith("refused")


def test_parse_reads_the_forced_tool_input():
    block = {"type": "tool_use", "name": STRUCTURED_TOOL, "id": "t1",
             "input": {"label": "contract", "confidence": 1}}  # fmt: skip
    result = structured_parse(message(block), SCHEMA)
    assert result.value["label"] == "contract" and result.error is None


# --- live, through the emulator ---------------------------------------------------------------

pytestmark_live = pytest.mark.django_db
PROMPT = [{"role": "user", "content": "Classify: please pay this invoice by Friday."}]


@pytestmark_live
def test_structured_call_native(door, emu):
    assert "output_config" in structured_params(SCHEMA, "claude-haiku-5-5")
    result = door.structured(CallContext("classification"), SCHEMA, messages=PROMPT, max_tokens=200)
    assert result.error is None, result.error
    assert result.value["label"] in LABELS
    assert UsageRecord.objects.get().model_id == "claude-haiku-5-5"


@pytestmark_live
def test_structured_call_with_a_forced_tool(door, emu):
    ModelSpec.objects.filter(model_id="claude-haiku-5-5").update(structured_outputs=False)
    assert "tool_choice" in structured_params(SCHEMA, "claude-haiku-5-5")
    result = door.structured(CallContext("classification"), SCHEMA, messages=PROMPT, max_tokens=200)
    assert result.error is None, result.error
    assert result.value["label"] in LABELS


@pytestmark_live
def test_invalid_output_is_returned_not_raised(door, emu):
    emu.faults([{"kind": "invalid_output"}])
    result = door.structured(CallContext("classification"), SCHEMA, messages=PROMPT, max_tokens=200)
    assert result.value is None
    assert result.error
    assert result.raw_text
