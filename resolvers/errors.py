"""The one place where domain exceptions become GraphQL error codes."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from services import errors
from services.outages import as_unavailable

log = logging.getLogger("kiln.graphql")

CODES: dict[type[errors.DomainError], str] = {
    errors.Unauthenticated: "UNAUTHENTICATED",
    errors.Forbidden: "FORBIDDEN",
    errors.BadUserInput: "BAD_USER_INPUT",
    errors.NotFound: "NOT_FOUND",
    errors.InsufficientCredits: "INSUFFICIENT_CREDITS",
    errors.Conflict: "CONFLICT",
    errors.RateLimited: "RATE_LIMITED",
    errors.Unavailable: "UNAVAILABLE",
}
INTERNAL_MESSAGE = "Internal server error. Quote the request id when you report it."


def code_of(error: errors.DomainError) -> str:
    for cls in type(error).__mro__:
        if cls in CODES:
            return CODES[cls]
    return "INTERNAL"


def format_error(error: GraphQLError, request_id: str) -> BaseException | None:
    """Rewrite `error` in place for the client. Returns the original exception when it was
    unexpected (INTERNAL), so the caller can log and record it. A dependency that did not
    answer (services.outages) is UNAVAILABLE with retryAfter, not unexpected."""
    original = error.original_error
    extensions: dict[str, Any]
    if original is not None and not isinstance(original, errors.DomainError | GraphQLError):
        original = as_unavailable(original) or original
    if original is None or isinstance(original, GraphQLError):
        # Parse, validation and variable errors: the request itself is wrong.
        extensions = {"code": "BAD_USER_INPUT"}
    elif isinstance(original, errors.DomainError):
        extensions = {"code": code_of(original)}
        if isinstance(original, errors.BadUserInput) and original.field:
            extensions["field"] = original.field
        if isinstance(original, errors.RateLimited | errors.Unavailable):
            extensions["retryAfter"] = original.retry_after
        error.message = original.message
    else:
        error.message = INTERNAL_MESSAGE
        error.extensions = {"code": "INTERNAL", "requestId": request_id}
        return original
    error.extensions = {**(error.extensions or {}), **extensions}
    return None
