"""Structured output from a JSON-Schema dict (so label enums can be built at run time).

`structured_params` gives request params in the model's strategy: native
`output_config.format` where the registry says the model supports it, otherwise a forced tool
where the model allows forced `tool_choice`, otherwise instructions in the system prompt.
`structured_parse` reads any of the three back into a `StructuredResult`; invalid output is
returned with its error, never raised.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from claudeapp.claude.config import Spec

__all__ = ["STRUCTURED_TOOL", "StructuredResult", "structured_params", "structured_parse"]

STRUCTURED_TOOL = "record_result"
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_validators: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class StructuredResult:
    value: Any | None
    raw_text: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _strict(schema: Any) -> Any:
    """Objects closed to extra properties (native structured output requires it)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def strategy_for(spec: Spec) -> str:
    if spec.structured_outputs:
        return "native"
    if spec.forced_tool_choice:
        return "tool"
    return "prompt"


def structured_params(
    schema: dict, spec: Spec, *, description: str = "Record the result."
) -> dict[str, Any]:
    """Request params that make `spec`'s model answer in `schema` (merge into the call)."""
    strategy = strategy_for(spec)
    if strategy == "native":
        return {"output_config": {"format": {"type": "json_schema", "schema": _strict(schema)}}}
    if strategy == "tool":
        params: dict[str, Any] = {
            "tools": [
                {"name": STRUCTURED_TOOL, "description": description, "input_schema": schema}
            ],
            "tool_choice": {"type": "tool", "name": STRUCTURED_TOOL},
        }
        # Forced tool use and thinking do not mix; turn thinking off where the model allows it.
        if "disabled" in spec.thinking_modes:
            params["thinking"] = {"type": "disabled"}
        return params
    return {
        "system_suffix": (
            "Answer with one JSON value only, no prose and no code fence, valid against this "
            f"JSON Schema:\n{json.dumps(schema, sort_keys=True)}"
        )
    }


def _validator(schema: dict) -> Any:
    digest = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
    validator = _validators.get(digest)
    if validator is None:
        cls = jsonschema.validators.validator_for(schema)
        validator = cls(copy.deepcopy(schema))
        if len(_validators) > 256:
            _validators.clear()
        _validators[digest] = validator
    return validator


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def structured_parse(message: Any, schema: dict) -> StructuredResult:
    """Read a reply (SDK `Message` or its dict) against `schema`; never raises on bad output."""
    if message is None:
        return StructuredResult(None, "", "no reply")
    content = _field(message, "content") or []
    stop_reason = _field(message, "stop_reason")
    raw_text = ""
    value: Any = None
    parsed = False
    for block in content:
        if _field(block, "type") == "tool_use" and _field(block, "name") == STRUCTURED_TOOL:
            value = _field(block, "input")
            raw_text = json.dumps(value, ensure_ascii=False)
            parsed = True
            break
    if not parsed:
        raw_text = "".join(_field(b, "text") or "" for b in content if _field(b, "type") == "text")
        if stop_reason == "refusal":
            return StructuredResult(None, raw_text, "refused: the model declined to answer")
        text = raw_text.strip()
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
        try:
            value = json.loads(text)
        except ValueError as exc:
            reason = "truncated (max_tokens)" if stop_reason == "max_tokens" else "not JSON"
            return StructuredResult(None, raw_text, f"{reason}: {exc}")
    error = next(iter(_validator(schema).iter_errors(value)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return StructuredResult(None, raw_text, f"schema violation at {where}: {error.message}")
    return StructuredResult(value, raw_text, None)
