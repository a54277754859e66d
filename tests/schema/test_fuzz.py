"""Generated GraphQL documents (valid ones from the schema, invalid ones, and plain noise) and
generated variables (strings with NULs and unpaired surrogates, huge strings and lists, deep
nesting, numbers out of range) sent to Kiln's GraphQL ASGI app over HTTP and run in process,
as a user and as an admin, on SQLite and PostgreSQL: whatever arrives, the answer is a JSON
GraphQL response whose errors all carry a contract code, never INTERNAL, nothing is recorded as
an error event, and it comes back (a generous timeout catches hangs; it is not a speed
assertion)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

import runtime
from models.error_event import ErrorEvent
from models.user import Role
from schema.build import build_schema
from services import auth, error_events
from services.catalogue import load_catalogue
from tests.support.providers import provider_deps
from tests.support.schema import SCHEMA, request_context
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
    # Strings written in the documents may hold NULs and any character a JSON body carries.
    queries(SDL, allow_x00=True, codec=None),
    mutations(SDL, allow_x00=True, codec=None),
    queries(SDL, mode=Mode.NEGATIVE),
    mutations(SDL, mode=Mode.NEGATIVE),
    st.text(max_size=200),
)

# Text as hostile as JSON can carry: NULs, control characters, halves of surrogate pairs.
TEXT = st.one_of(
    st.text(st.characters(categories=["Cs", "Cc", "Ll", "Lu", "Nd", "Zs", "So"]), max_size=12),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "x" * 5_000, "é" * 300, ""]),
)
DEEP: Any = "QUEUED"
for _ in range(900):
    DEEP = [DEEP]
HUGE = st.sampled_from([["QUEUED"] * 40_000, ["x"] * 5_000, DEEP, list(range(1_000))])
NUMBERS = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([2**63, -(2**40), 0, -1]))


def values(graphql_type: Any) -> st.SearchStrategy[Any]:
    """Values for an argument of this type: mostly of the type, hostile in every way JSON
    allows, and sometimes of another type altogether."""
    nullable = not isinstance(graphql_type, GraphQLNonNull)
    inner = graphql_type.of_type if not nullable else graphql_type
    strategy: st.SearchStrategy[Any]
    if isinstance(inner, GraphQLList):
        strategy = st.one_of(st.lists(values(inner.of_type), max_size=3), HUGE)
    elif isinstance(inner, GraphQLInputObjectType):
        required = {n for n, f in inner.fields.items() if isinstance(f.type, GraphQLNonNull)}
        strategy = st.fixed_dictionaries(
            {n: values(f.type) for n, f in inner.fields.items() if n in required},
            optional={n: values(f.type) for n, f in inner.fields.items() if n not in required},
        )
    elif isinstance(inner, GraphQLEnumType):
        strategy = st.one_of(st.sampled_from(list(inner.values)), TEXT)
    elif isinstance(inner, GraphQLScalarType) and inner.name == "Int":
        strategy = NUMBERS
    elif isinstance(inner, GraphQLScalarType) and inner.name == "Float":
        strategy = st.floats(allow_nan=False, allow_infinity=False)
    elif isinstance(inner, GraphQLScalarType) and inner.name == "Boolean":
        strategy = st.booleans()
    else:
        strategy = TEXT
    if nullable:
        strategy = st.one_of(st.none(), strategy)
    return st.one_of(strategy, HUGE) if isinstance(inner, GraphQLScalarType) else strategy


ROOTS = [
    (keyword, name, field)
    for keyword, root in (("query", "Query"), ("mutation", "Mutation"))
    for name, field in SCHEMA._schema.get_type(root).fields.items()  # type: ignore[union-attr]
    if field.args
]


@st.composite
def operations(draw: Any) -> tuple[str, dict[str, Any]]:
    """A query or mutation of one root field, every argument passed as a variable."""
    keyword, name, field = draw(st.sampled_from(ROOTS))
    declared = ", ".join(f"${a}: {arg.type}" for a, arg in field.args.items())
    passed = ", ".join(f"{a}: ${a}" for a in field.args)
    named = field.type
    while isinstance(named, GraphQLNonNull | GraphQLList):
        named = named.of_type
    selection = "{ __typename }" if hasattr(named, "fields") else ""
    variables = {a: draw(values(arg.type)) for a, arg in field.args.items()}
    return f"{keyword}({declared}) {{ {name}({passed}) {selection} }}", variables


@pytest.fixture(scope="module")
async def app(backend):
    """The GraphQL app as the server builds it, over the test database, with generous rate
    limits (the fuzzing itself is not what is being limited)."""
    test_settings = backend.settings.model_copy(
        update={
            "rate_limit_per_user": 1_000_000,
            "rate_limit_per_ip": 1_000_000,
            "query_rate_limit_per_user": 1_000_000,
            "query_rate_limit_per_ip": 1_000_000,
        }
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
    before = await recorded_errors()
    transport = httpx.ASGITransport(app=KilnGraphQL(test_settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://kiln.test") as client:
        yield client, tokens, test_settings
    runtime._current = previous
    # Nothing any of it sent was an unexpected error.
    assert await recorded_errors() == before


async def recorded_errors() -> int:
    await asyncio.sleep(0)
    await error_events.flush()
    return await ErrorEvent.all().count()


def check(body: Any, context: Any) -> None:
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code in CODES, (context, error)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=DOCUMENTS, as_admin=st.booleans())
async def test_generated_documents_never_break_the_api(app, document, as_admin):
    client, tokens, _ = app
    response = await asyncio.wait_for(
        client.post(
            "/graphql",
            json={"query": document},
            headers={"Authorization": f"Bearer {tokens[as_admin]}"},
        ),
        HANG,
    )
    assert response.status_code in (200, 400), (response.status_code, response.text[:500])
    check(response.json(), document)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(operation=operations(), as_admin=st.booleans())
async def test_generated_variables_never_break_the_api(app, operation, as_admin):
    """Over HTTP, in a JSON body as a client writes it (unpaired surrogates as escapes)."""
    client, tokens, _ = app
    document, variables = operation
    body = json.dumps({"query": document, "variables": variables})
    response = await asyncio.wait_for(
        client.post(
            "/graphql",
            content=body,
            headers={
                "Authorization": f"Bearer {tokens[as_admin]}",
                "content-type": "application/json",
            },
        ),
        HANG,
    )
    assert response.status_code in (200, 400), (response.status_code, response.text[:500])
    check(response.json(), document)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(operation=operations(), as_admin=st.booleans())
async def test_generated_variables_never_reach_the_database_unchecked(app, operation, as_admin):
    """In process, where no JSON decoder stands between the values and the schema: surrogates
    and NULs reach the input caps themselves."""
    _, tokens, test_settings = app
    document, variables = operation
    result = await asyncio.wait_for(
        SCHEMA.execute(
            document,
            variable_values=variables,
            context_value=request_context(test_settings, tokens[as_admin]),
        ),
        HANG,
    )
    check({"errors": [e.formatted for e in result.errors or ()]}, document)
