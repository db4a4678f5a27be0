"""Request validation with the real API's status codes, error types and (close) messages.

Messages follow the API's ``<location>: <problem>`` style (``max_tokens: Field required``).
Checks run from cheap and structural to model-specific, and the first failure wins, as the
real API reports one problem per request. After the shape checks come the content checks that
live with their features: cache breakpoints (:mod:`emulator.cache`), images
(:mod:`emulator.images`), documents and citations (:mod:`emulator.citations`) and, for
Messages calls, the thinking history (:mod:`emulator.thinking`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import models_table as mt
from .cache import check_breakpoints, segment_paths
from .citations import validate_documents
from .errors import ApiError, invalid
from .images import check_images
from .thinking import check_thinking_history
from .tokens import Segment, request_segments

__all__ = [
    "API_VERSIONS",
    "Checked",
    "check_version",
    "validate_count_tokens",
    "validate_create",
]

V2023 = "2023-06-01"
V2026 = "2026-10-21"
API_VERSIONS = (V2023, V2026)
SAMPLING = ("temperature", "top_p", "top_k")

# fmt: off
_COMMON_FIELDS = {
    "model", "messages", "system", "tools", "tool_choice", "thinking", "output_config",
    "cache_control", "speed", "context_management", "mcp_servers", *SAMPLING,
}
CREATE_FIELDS = _COMMON_FIELDS | {
    "max_tokens", "stop_sequences", "stream", "metadata", "service_tier", "container",
    "diagnostics", "inference_geo",
    # beta-only body fields (client.beta.messages.create); accepted, not acted on
    "fallbacks", "fallback_credit_token", "compaction", "thread", "billing_policy",
}
COUNT_FIELDS = _COMMON_FIELDS
ROLES = ("user", "assistant", "system")
BLOCK_TYPES = {
    "text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use",
    "tool_result", "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result", "tool_search_tool_result", "container_upload",
    "tool_reference", "mcp_tool_use", "mcp_tool_result",
}
CACHEABLE = {"text", "image", "document", "search_result", "tool_use", "tool_result"}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_TRAILING_WS = re.compile(r"\s$")
# fmt: on


@dataclass
class Checked:
    """What validation learned, so handlers need not recompute it."""

    spec: mt.ModelSpec
    segments: list[Segment]
    input_tokens: int
    version: str
    thinking: str  # effective thinking type


def check_version(value: str | None) -> str:
    if not value:
        raise invalid("anthropic-version: header is required")
    if value not in API_VERSIONS:
        raise invalid(
            f"anthropic-version: invalid version '{value}'. Supported: {', '.join(API_VERSIONS)}"
        )
    return value


# --- small type helpers ------------------------------------------------------------------------


def _type_name(v: object) -> str:
    return "null" if v is None else type(v).__name__


def _need(cond: bool, loc: str, problem: str) -> None:
    if not cond:
        raise invalid(f"{loc}: {problem}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _require_str(body: dict, key: str, loc: str) -> str:
    _need(key in body, f"{loc}{key}", "Field required")
    v = body[key]
    _need(isinstance(v, str), f"{loc}{key}", "Input should be a valid string")
    return v


# --- the checks -------------------------------------------------------------------------------


def validate_create(body: object, version: str) -> Checked:
    return _validate(body, version, count_tokens=False)


def validate_count_tokens(body: object, version: str) -> Checked:
    return _validate(body, version, count_tokens=True)


def _validate(body: object, version: str, *, count_tokens: bool) -> Checked:
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    allowed = COUNT_FIELDS if count_tokens else CREATE_FIELDS
    for key in body:
        if key not in allowed:
            raise invalid(f"{key}: Extra inputs are not permitted")
    model_id = _require_str(body, "model", "")
    if not count_tokens:
        _need("max_tokens" in body, "max_tokens", "Field required")
        _need(_is_int(body["max_tokens"]), "max_tokens", "Input should be a valid integer")
        _need(body["max_tokens"] >= 0, "max_tokens", "Input should be greater than or equal to 0")
    _need("messages" in body, "messages", "Field required")
    messages = body["messages"]
    _need(isinstance(messages, list), "messages", "Input should be a valid list")
    _need(len(messages) > 0, "messages", "at least one message is required")
    _need(len(messages) <= 100_000, "messages", "at most 100000 messages are allowed")

    spec = mt.resolve(model_id)
    if spec is None:
        raise ApiError(404, f"model: {model_id}")

    _check_messages(messages)
    _check_system(body.get("system", None))
    if not count_tokens:
        _check_scalars(body)
    tool_names = _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"), tool_names, spec)
    thinking = _check_thinking(body, spec, count_tokens=count_tokens)
    _check_output_config(body.get("output_config"), spec)
    _check_sampling(body, spec, version, thinking)
    if (
        not count_tokens
        and messages
        and isinstance(messages[-1], dict)
        and messages[-1].get("role") == "assistant"
        and not spec.prefill
    ):
        raise invalid("Prefilling assistant messages is not supported for this model.")
    segments = request_segments(body)
    _check_cache_control(body, segments)
    _check_content(body, spec, version, count_tokens=count_tokens)

    if not count_tokens and body["max_tokens"] > spec.max_output:
        raise invalid(
            f"max_tokens: {body['max_tokens']} > {spec.max_output}, which is the maximum allowed "
            f"number of output tokens for {model_id}"
        )
    total = sum(s.tokens for s in segments)
    if total > spec.context_window:
        raise invalid(f"prompt is too long: {total} tokens > {spec.context_window} maximum")
    return Checked(spec, segments, total, version, thinking)


def _check_scalars(body: dict) -> None:
    if "stream" in body:
        _need(isinstance(body["stream"], bool), "stream", "Input should be a valid boolean")
    if "stop_sequences" in body:
        seqs = body["stop_sequences"]
        _need(isinstance(seqs, list), "stop_sequences", "Input should be a valid list")
        for i, s in enumerate(seqs):
            _need(isinstance(s, str), f"stop_sequences.{i}", "Input should be a valid string")
            _need(
                s.strip() != "", "stop_sequences", "each stop sequence must contain non-whitespace"
            )
    if "metadata" in body:
        md = body["metadata"]
        _need(isinstance(md, dict), "metadata", "Input should be a valid dictionary")
        for key in md:
            _need(key == "user_id", f"metadata.{key}", "Extra inputs are not permitted")
        uid = md.get("user_id")
        _need(
            uid is None or isinstance(uid, str),
            "metadata.user_id",
            "Input should be a valid string",
        )
    if "service_tier" in body:
        _need(
            body["service_tier"] in ("auto", "standard_only"),
            "service_tier",
            "Input should be 'auto' or 'standard_only'",
        )


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    _need(isinstance(system, list), "system", "Input should be a valid string or list")
    for i, block in enumerate(system):
        loc = f"system.{i}"
        _need(isinstance(block, dict), loc, "Input should be a valid dictionary")
        _need(block.get("type") == "text", f"{loc}.type", "Input should be 'text'")
        _need(isinstance(block.get("text"), str), f"{loc}.text", "Input should be a valid string")
        _need(block["text"] != "", loc, "text content blocks must be non-empty")


def _check_messages(messages: list) -> None:
    for i, msg in enumerate(messages):
        loc = f"messages.{i}"
        _need(isinstance(msg, dict), loc, "Input should be a valid dictionary")
        _need("role" in msg, f"{loc}.role", "Field required")
        _need(
            msg["role"] in ROLES, f"{loc}.role", "Input should be 'user', 'assistant' or 'system'"
        )
        _need("content" in msg, f"{loc}.content", "Field required")
        content = msg["content"]
        last_assistant = i == len(messages) - 1 and msg["role"] == "assistant"
        if isinstance(content, str):
            if content == "" and not last_assistant:
                raise invalid(
                    f"{loc}: all messages must have non-empty content except for the optional "
                    "final assistant message"
                )
            if last_assistant and _TRAILING_WS.search(content):
                raise invalid("final assistant content cannot end with trailing whitespace")
            continue
        _need(isinstance(content, list), f"{loc}.content", "Input should be a valid list")
        if not content and not last_assistant:
            raise invalid(
                f"{loc}: all messages must have non-empty content except for the optional "
                "final assistant message"
            )
        for j, block in enumerate(content):
            _check_block(block, f"{loc}.content.{j}")
        if last_assistant and content:
            tail = content[-1]
            if tail.get("type") == "text" and _TRAILING_WS.search(tail.get("text", "")):
                raise invalid("final assistant content cannot end with trailing whitespace")
    _check_tool_pairing(messages)


def _check_block(block: object, loc: str) -> None:
    _need(isinstance(block, dict), loc, "Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        raise invalid(
            f"{loc}.type: Input tag '{kind}' found using 'type' does not match any of the "
            "expected tags"
        )
    # Documents (and citations on user text) are checked by citations.validate_documents,
    # base64 image data by images.check_images, after these shape checks.
    if kind == "text":
        _need(isinstance(block.get("text"), str), f"{loc}.text", "Input should be a valid string")
        _need(block["text"] != "", loc, "text content blocks must be non-empty")
    elif kind == "image":
        _check_image(block, loc)
    elif kind == "search_result":
        content = block.get("content")
        _need(isinstance(content, list), f"{loc}.content", "Input should be a valid list")
        for k, sub in enumerate(content):
            _check_block(sub, f"{loc}.content.{k}")
    elif kind == "tool_use":
        _need(isinstance(block.get("id"), str), f"{loc}.id", "Field required")
        _need(isinstance(block.get("name"), str), f"{loc}.name", "Field required")
        _need(
            isinstance(block.get("input"), dict),
            f"{loc}.input",
            "Input should be a valid dictionary",
        )
    elif kind == "tool_result":
        _need(isinstance(block.get("tool_use_id"), str), f"{loc}.tool_use_id", "Field required")
        content = block.get("content", "")
        if isinstance(content, list):
            for k, sub in enumerate(content):
                _check_block(sub, f"{loc}.content.{k}")
        else:
            _need(
                isinstance(content, str), f"{loc}.content", "Input should be a valid string or list"
            )
    cc = block.get("cache_control")
    if cc is not None and kind not in CACHEABLE:
        raise invalid(f"{loc}.{kind}.cache_control: Extra inputs are not permitted")


def _check_image(block: dict, loc: str) -> None:
    src = block.get("source")
    _need(isinstance(src, dict), f"{loc}.source", "Field required")
    stype = src.get("type")
    _need(
        stype in ("base64", "url", "file"),
        f"{loc}.source.type",
        "Input should be 'base64', 'url' or 'file'",
    )


def _blocks(msg: dict) -> list[dict]:
    c = msg.get("content")
    return [b for b in c if isinstance(b, dict)] if isinstance(c, list) else []


def _check_tool_pairing(messages: list) -> None:
    """tool_use ids must be answered in the next message, tool_result ids must be asked before."""
    for i, msg in enumerate(messages):
        uses = [b["id"] for b in _blocks(msg) if b.get("type") == "tool_use"]
        if msg.get("role") == "assistant" and uses and i + 1 < len(messages):
            nxt = messages[i + 1]
            answered = {
                b.get("tool_use_id") for b in _blocks(nxt) if b.get("type") == "tool_result"
            }
            missing = [u for u in uses if u not in answered]
            if missing:
                raise invalid(
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message."
                )
        results = [
            (j, b.get("tool_use_id"))
            for j, b in enumerate(_blocks(msg))
            if b.get("type") == "tool_result"
        ]
        if results:
            prev = messages[i - 1] if i > 0 else {}
            asked = {b.get("id") for b in _blocks(prev) if b.get("type") == "tool_use"}
            for j, tid in results:
                if tid not in asked:
                    raise invalid(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {tid}. Each `tool_result` block must have a "
                        "corresponding `tool_use` block in the previous message."
                    )


def _check_tools(tools: object) -> set[str]:
    if tools is None:
        return set()
    _need(isinstance(tools, list), "tools", "Input should be a valid list")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        loc = f"tools.{i}"
        _need(isinstance(tool, dict), loc, "Input should be a valid dictionary")
        name = tool.get("name")
        _need(isinstance(name, str), f"{loc}.name", "Field required")
        ttype = tool.get("type")
        if ttype in (None, "custom"):
            _need(bool(_TOOL_NAME.match(name)), f"{loc}.custom.name",
                  "String should match pattern '^[a-zA-Z0-9_-]{1,128}$'")  # fmt: skip
            schema = tool.get("input_schema")
            _need(isinstance(schema, dict), f"{loc}.custom.input_schema", "Field required")
            _need(schema.get("type") == "object", f"{loc}.custom.input_schema.type",
                  "Input should be 'object'")  # fmt: skip
        if name in names:
            raise invalid("tools: Tool names must be unique.")
        names.add(name)
    return names


def _check_tool_choice(choice: object, tool_names: set[str], spec: mt.ModelSpec) -> None:
    if choice is None:
        return
    _need(isinstance(choice, dict), "tool_choice", "Input should be a valid dictionary")
    ctype = choice.get("type")
    _need(ctype in ("auto", "any", "tool", "none"), "tool_choice.type",
          "Input should be 'auto', 'any', 'tool' or 'none'")  # fmt: skip
    if ctype in ("any", "tool"):
        if not tool_names:
            raise invalid(
                f"tool_choice: tool_choice.type '{ctype}' may only be specified while "
                "providing tools"
            )
        if not spec.forced_tool_choice:
            raise invalid(
                f"tool_choice: forcing tool use (tool_choice.type '{ctype}') is not supported for "
                f"{spec.id}; use 'auto' or 'none'"
            )
    if ctype == "tool":
        name = choice.get("name")
        _need(isinstance(name, str), "tool_choice.tool.name", "Field required")
        if name not in tool_names:
            raise invalid(f"tool_choice: Tool '{name}' not found in provided tools")


def _check_thinking(body: dict, spec: mt.ModelSpec, *, count_tokens: bool) -> str:
    thinking = body.get("thinking")
    if thinking is None:
        return spec.default_thinking
    _need(isinstance(thinking, dict), "thinking", "Input should be a valid dictionary")
    ttype = thinking.get("type")
    _need(ttype in mt.THINKING_TYPES, "thinking.type",
          "Input should be 'enabled', 'adaptive', 'disabled' or 'between_tools'")  # fmt: skip
    if ttype not in spec.thinking:
        accepted = ", ".join(sorted(spec.thinking))
        raise invalid(
            f"thinking.type: '{ttype}' is not supported for {spec.id}. Supported: {accepted}"
        )
    if "display" in thinking:
        _need(thinking["display"] in ("summarized", "omitted"), "thinking.display",
              "Input should be 'summarized' or 'omitted'")  # fmt: skip
    if ttype == mt.ENABLED:
        budget = thinking.get("budget_tokens")
        _need("budget_tokens" in thinking, "thinking.enabled.budget_tokens", "Field required")
        _need(_is_int(budget), "thinking.enabled.budget_tokens", "Input should be a valid integer")
        _need(budget >= 1024, "thinking.enabled.budget_tokens",
              "Input should be greater than or equal to 1024")  # fmt: skip
        if not count_tokens and budget >= body["max_tokens"]:
            raise invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
    choice = body.get("tool_choice")
    if (
        ttype in (mt.ENABLED, mt.ADAPTIVE)
        and isinstance(choice, dict)
        and choice.get("type") in ("any", "tool")
    ):
        raise invalid("Thinking may not be enabled when tool_choice forces tool use.")
    return ttype


def _check_output_config(cfg: object, spec: mt.ModelSpec) -> None:
    if cfg is None:
        return
    _need(isinstance(cfg, dict), "output_config", "Input should be a valid dictionary")
    for key in cfg:
        _need(key in ("effort", "format"), f"output_config.{key}", "Extra inputs are not permitted")
    effort = cfg.get("effort")
    if effort is not None:
        _need(effort in mt.EFFORT_LEVELS, "output_config.effort",
              "Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")  # fmt: skip
        if not spec.effort:
            raise invalid(f"output_config.effort: effort is not supported for {spec.id}")
        if effort == "xhigh" and not spec.xhigh:
            raise invalid(f"output_config.effort: 'xhigh' is not supported for {spec.id}")
    fmt = cfg.get("format")
    if fmt is not None:
        _need(isinstance(fmt, dict), "output_config.format", "Input should be a valid dictionary")
        _need(fmt.get("type") == "json_schema", "output_config.format.type",
              "Input should be 'json_schema'")  # fmt: skip
        _need(isinstance(fmt.get("schema"), dict), "output_config.format.schema", "Field required")
        if not spec.structured_output:
            raise invalid(
                f"output_config.format: structured outputs are not supported for {spec.id}"
            )


def _check_sampling(body: dict, spec: mt.ModelSpec, version: str, thinking: str) -> None:
    present = [k for k in SAMPLING if k in body]
    if not present:
        return
    if version == V2026:
        raise invalid(
            f"{present[0]}: sampling parameters (temperature, top_p, top_k) are not supported "
            f"with anthropic-version {V2026}"
        )
    if not spec.sampling:
        raise invalid(f"`{present[0]}` is deprecated for this model.")
    temperature, top_p, top_k = (body.get(k) for k in SAMPLING)
    if "temperature" in body:
        _need(_is_num(temperature), "temperature", "Input should be a valid number")
        _need(0 <= temperature <= 1, "temperature", "Input should be between 0 and 1")
    if "top_p" in body:
        _need(_is_num(top_p), "top_p", "Input should be a valid number")
        _need(0 <= top_p <= 1, "top_p", "Input should be between 0 and 1")
    if "top_k" in body:
        _need(_is_int(top_k), "top_k", "Input should be a valid integer")
        _need(top_k >= 0, "top_k", "Input should be greater than or equal to 0")
    if "temperature" in body and "top_p" in body:
        raise invalid("`temperature` and `top_p` cannot both be specified for this model.")
    if thinking in (mt.ENABLED, mt.ADAPTIVE):
        if "temperature" in body and temperature != 1:
            raise invalid("temperature may only be set to 1 when thinking is enabled.")
        if "top_k" in body:
            raise invalid("top_k is not supported when thinking is enabled.")


def _iter_markers(body: dict):
    """(location, cache_control) of every marker, in prompt order tools -> system -> messages."""
    for i, tool in enumerate(body.get("tools") or []):
        if isinstance(tool, dict) and tool.get("cache_control") is not None:
            yield f"tools.{i}", tool["cache_control"]
    system = body.get("system")
    if isinstance(system, list):
        for i, b in enumerate(system):
            if isinstance(b, dict) and b.get("cache_control") is not None:
                yield f"system.{i}", b["cache_control"]
    for i, msg in enumerate(body.get("messages") or []):
        for j, b in enumerate(_blocks(msg)):
            loc = f"messages.{i}.content.{j}"
            if b.get("cache_control") is not None:
                yield loc, b["cache_control"]
            if b.get("type") == "tool_result" and isinstance(b.get("content"), list):
                for k, sub in enumerate(b["content"]):
                    if isinstance(sub, dict) and sub.get("cache_control") is not None:
                        yield f"{loc}.content.{k}", sub["cache_control"]
    if body.get("cache_control") is not None:
        yield "cache_control", body["cache_control"]


def _check_cache_control(body: dict, segments: list[Segment]) -> None:
    """Each marker's shape here; how many and in which TTL order: the prompt cache's rules
    (:func:`emulator.cache.check_breakpoints`). A tool_result is one segment, so markers inside
    it make one breakpoint at its end (see :func:`emulator.tokens.block_cache_control`)."""
    for loc, cc in _iter_markers(body):
        _need(isinstance(cc, dict), f"{loc}.cache_control", "Input should be a valid dictionary")
        _need(
            cc.get("type") == "ephemeral",
            f"{loc}.cache_control.type",
            "Input should be 'ephemeral'",
        )
    message = check_breakpoints(segments, body.get("cache_control"), segment_paths(body))
    if message is not None:
        raise invalid(message)


def _check_content(body: dict, spec: mt.ModelSpec, version: str, *, count_tokens: bool) -> None:
    """Part 2's content checks, in order: images, documents/citations, thinking history."""
    message = check_images(body, max_images=100 if spec.context_window <= 200_000 else 600)
    if message is None:
        message = validate_documents(body, version)
    if message is None and not count_tokens:
        always_on = mt.DISABLED not in spec.thinking
        message = check_thinking_history(body, spec.id, always_on=always_on)
    if message is not None:
        raise invalid(message)
