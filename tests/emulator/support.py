"""Helpers shared by the emulator's conformance tests."""

from __future__ import annotations

import json
import time

import anthropic
from anthropic._models import BaseModel


def strict(model_cls: type, obj: object) -> object:
    """Validate like the SDK in strict mode, and also refuse fields the type does not have
    (the SDK's models accept extras silently, which would hide a misspelt field). Batch result
    lines need this: ``batches.results()`` builds them without validation."""
    instance = model_cls.model_validate_json(json.dumps(obj), strict=True)
    no_extras(instance)
    return instance


def no_extras(value: object) -> None:
    if isinstance(value, BaseModel):
        assert not value.model_extra, f"{type(value).__name__} extras: {value.model_extra}"
        for name in type(value).model_fields:
            no_extras(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            no_extras(item)


def wait_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 30.0) -> object:
    """Poll until the batch has ended; the ended MessageBatch."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} did not end: {batch}"
        time.sleep(0.05)


def text_of(message: object) -> str:
    """The message's text blocks joined (thinking and tool_use blocks left out)."""
    return "".join(b.text for b in message.content if b.type == "text")


def blocks_of(message: object, kind: str) -> list:
    return [b for b in message.content if b.type == kind]
