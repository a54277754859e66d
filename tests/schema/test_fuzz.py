"""Generated GraphQL documents (valid ones from the schema, invalid ones, and plain noise)
sent to Kiln's GraphQL ASGI app over HTTP, as a user and as an admin: whatever arrives, the
answer is a JSON GraphQL response whose errors all carry a contract code, never INTERNAL, and
it comes back (a generous timeout catches hangs; it is not a speed assertion)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

import runtime
from models.user import Role
from schema.build import build_schema
from services import auth
from services.catalogue import load_catalogue
from tests.support.providers import provider_deps
from web.graphql_app import KilnGraphQL

SDL = build_schema().as_str()
CODES = {
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "INSUFFICIENT_CREDITS",
    "CONFLICT",
    "RATE_LIMITED",
}
HANG = 20.0  # seconds: far beyond any answer, short of a stuck test run

DOCUMENTS = st.one_of(
    queries(SDL),
    mutations(SDL),
    queries(SDL, mode=Mode.NEGATIVE),
    mutations(SDL, mode=Mode.NEGATIVE),
    st.text(max_size=200),
)


@pytest.fixture(scope="module")
async def app(backend):
    """The GraphQL app as the server builds it, over the test database, with generous rate
    limits (the fuzzing itself is not what is being limited)."""
    test_settings = backend.settings.model_copy(
        update={"rate_limit_per_user": 1_000_000, "rate_limit_per_ip": 1_000_000}
    )
    previous = runtime._current
    runtime._current = SimpleNamespace(  # type: ignore[assignment]
        catalogue=load_catalogue(), providers=provider_deps(), redis=None
    )
    user = await auth.register("fuzz-user@example.com", "fuzz password", test_settings)
    admin = await auth.register(
        "fuzz-admin@example.com", "fuzz password", test_settings, role=Role.ADMIN
    )
    tokens = [auth.issue_token(user, test_settings), auth.issue_token(admin, test_settings)]
    transport = httpx.ASGITransport(app=KilnGraphQL(test_settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://kiln.test") as client:
        yield client, tokens
    runtime._current = previous


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=DOCUMENTS, as_admin=st.booleans())
async def test_generated_documents_never_break_the_api(app, document, as_admin):
    client, tokens = app
    response = await asyncio.wait_for(
        client.post(
            "/graphql",
            json={"query": document},
            headers={"Authorization": f"Bearer {tokens[as_admin]}"},
        ),
        HANG,
    )
    assert response.status_code in (200, 400), (response.status_code, response.text[:500])
    body = response.json()
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code in CODES, (document, error)
