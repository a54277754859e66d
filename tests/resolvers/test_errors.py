from __future__ import annotations

import asyncio
import uuid

from graphql import GraphQLError

from models.error_event import ErrorEvent
from resolvers.errors import INTERNAL_MESSAGE, format_error
from schema.build import build_schema
from services import auth, errors
from tests.support.schema import request_context


def test_domain_errors_map_to_contract_codes():
    cases = [
        (errors.Unauthenticated(), {"code": "UNAUTHENTICATED"}),
        (errors.Forbidden(), {"code": "FORBIDDEN"}),
        (errors.BadUserInput("bad", field="prompt"), {"code": "BAD_USER_INPUT", "field": "prompt"}),
        (errors.NotFound("no"), {"code": "NOT_FOUND"}),
        (errors.InsufficientCredits(3, 1), {"code": "INSUFFICIENT_CREDITS"}),
        (errors.InvalidTransition("no"), {"code": "CONFLICT"}),
        (errors.RateLimited(7), {"code": "RATE_LIMITED", "retryAfter": 7}),
    ]
    for original, extensions in cases:
        error = GraphQLError("raw", original_error=original)
        assert format_error(error, "req-1") is None
        assert error.extensions == extensions
        assert error.message == original.message


def test_syntax_and_validation_errors_are_bad_user_input():
    error = GraphQLError("Cannot query field 'nope' on type 'Query'.")
    assert format_error(error, "r") is None
    assert error.extensions == {"code": "BAD_USER_INPUT"}


async def test_unexpected_exceptions_are_masked_logged_and_recorded(
    make_user, backend, monkeypatch, caplog
):
    user = await make_user()

    async def broken(user_id):
        raise RuntimeError("relation secret_table does not exist")

    monkeypatch.setattr("services.credits.get_balance", broken)
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))
    # Its own id: the same error, recorded by an earlier run of this test, is one event.
    request_id = context.request_id = f"req-internal-{uuid.uuid4().hex[:8]}"
    result = await build_schema().execute("{ creditBalance { available } }", context_value=context)
    assert result.errors is not None
    formatted = result.errors[0].formatted
    assert formatted["message"] == INTERNAL_MESSAGE
    assert formatted["extensions"] == {"code": "INTERNAL", "requestId": request_id}
    assert "secret_table" not in str(formatted)
    assert "secret_table" in caplog.text  # the stack is in our logs, not the response
    for _ in range(50):
        event = await ErrorEvent.filter(error_code="INTERNAL").order_by("-last_seen").first()
        if event and event.last_occurrence and event.last_occurrence["requestId"] == request_id:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the INTERNAL error was not recorded")
    assert "RuntimeError" in event.message
    # Filed with the caller's id, so an admin can see whom it hit.
    assert event.last_occurrence["userId"] == str(user.id)
