"""API errors in the real wire shape, shared by validation, faults and the app."""

from __future__ import annotations

import json
import secrets
import string

# Error ``type`` the real API sends with each status (reference section C.1).
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

DEFAULT_MESSAGES: dict[int, str] = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found.",
    408: "Request timed out.",
    409: "Conflict.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of requests has exceeded your per-minute rate limit.",
    500: "Internal server error.",
    503: "Service unavailable.",
    504: "Gateway timeout.",
    529: "Overloaded",
}

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """An id shaped like the real ones (``req_011CS...``): prefix plus base62 characters."""
    n = int.from_bytes(secrets.token_bytes(length))  # one syscall, not one per character
    chars = []
    for _ in range(length):
        n, r = divmod(n, 62)
        chars.append(_ALPHABET[r])
    return prefix + "".join(chars)


class ApiError(Exception):
    """An error the API answers with; ``headers`` adds e.g. ``retry-after``."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        error_type: str | None = None,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.error_type = error_type or ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        self.message = message or DEFAULT_MESSAGES.get(status, "Error.")
        self.error_code = error_code
        self.headers = dict(headers or {})
        super().__init__(f"{status} {self.error_type}: {self.message}")

    def body(self, request_id: str) -> dict:
        error: dict = {"type": self.error_type, "message": self.message}
        if self.error_code:
            error["details"] = {"error_code": self.error_code}
        return {"type": "error", "error": error, "request_id": request_id}

    def body_bytes(self, request_id: str) -> bytes:
        return json.dumps(self.body(request_id)).encode()


def invalid(message: str) -> ApiError:
    """The common case: a 400 ``invalid_request_error``."""
    return ApiError(400, message)
