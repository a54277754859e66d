"""The GraphQL endpoint's reading of request bodies: whatever bytes arrive, the answer is a JSON
body with a code, never a bare 500, and nothing is recorded as an error."""

from __future__ import annotations

import asyncio

import pytest

from models.error_event import ErrorEvent
from services import auth, error_events
from tests.support.app import app_client

QUERY = b'"query($s: [GenerationStatus!]) { generations(status: $s) { edges { cursor } } }"'


async def error_event_count() -> int:
    await asyncio.sleep(0)  # let a recording the request started begin
    await error_events.flush()
    return await ErrorEvent.all().count()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # 200 KB of nested arrays: RecursionError, a bare 500
        b'{"query": "{ me { id } }", "variables": {"s": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        b'{"query": "mutation { login(email: \\"a\\ud800@example.com\\", password: \\"x\\") '
        b'{ token } }"}',  # half a surrogate pair
        b'{"query": "{ me { id } }", "variables": {"e": "\\udfff"}}',
    ],
    ids=["nested arrays", "nested variables", "a surrogate in the query", "in a variable"],
)
async def test_unreadable_bodies_are_400_with_a_code(backend, monkeypatch, body):
    before = await error_event_count()
    async with app_client(backend, monkeypatch) as client:
        response = await client.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text[:200]
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await error_event_count() == before


async def test_variables_nested_within_the_decoders_limit_are_bad_user_input(
    backend, monkeypatch, make_user
):
    """1,000 levels decode; nothing after the decoder recurses into them."""
    token = auth.issue_token(await make_user(), backend.settings)
    deep = b"[" * 1_000 + b'"QUEUED"' + b"]" * 1_000
    body = b'{"query": ' + QUERY + b', "variables": {"s": ' + deep + b"}}"
    before = await error_event_count()
    async with app_client(backend, monkeypatch) as client:
        for _ in range(2):  # new to the server, then as a prepared operation
            response = await client.post(
                "/graphql",
                content=body,
                headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
            )
            assert response.status_code == 200, response.text[:200]
            error = response.json()["errors"][0]
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "status"}
    assert await error_event_count() == before
