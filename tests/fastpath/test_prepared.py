"""Prepared operations: a document seen once is run again without Strawberry's per-operation
machinery, and the client cannot tell: the same data, errors, codes and headers."""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Any

import httpx
import orjson
import pytest
from strawberry.extensions import MaskErrors, SchemaExtension

from fastpath.prepared import PreparedOperations
from observability.graphql import GraphQLObservability
from schema.build import build_schema
from schema.security import InputLimits, OperationRateLimit, ResultBudget
from services import auth
from tests.support.app import app_client, parse, value
from web.graphql_app import KilnGraphQL

CREATE = """mutation Create($input: CreateGenerationInput!) {
  createGeneration(input: $input) { id status cost version prompt }
}"""
# Up to 50 generations with 8 children each, with their outputs: over MAX_RESULT_OBJECTS at
# 50 per page.
NESTED = """query Nested($n: Int!) {
  generations(first: $n) { edges { node { id children { id outputs { url } } } } }
}"""
SEVERAL = "query Me { me { email role } } query Models { models { id kind } }"
_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


def normal(body: Any) -> Any:
    """The body with ids (generation ids, request ids) replaced: they differ between two runs."""
    if isinstance(body, dict):
        return {key: normal(item) for key, item in body.items()}
    if isinstance(body, list):
        return [normal(item) for item in body]
    return _IDS.sub("<id>", body) if isinstance(body, str) else body


def graphql_of(client: httpx.AsyncClient) -> KilnGraphQL:
    app: Any = client._transport.app  # type: ignore[attr-defined]
    return next(r.endpoint for r in app.routes if isinstance(r.endpoint, KilnGraphQL))


class Paths:
    """Counts which way each request went."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, graphql: KilnGraphQL) -> None:
        self.prepared = self.strawberry = 0
        prepared = graphql.prepared
        assert prepared is not None
        prepared_execute, strawberry_execute = prepared.execute, graphql.schema.execute

        async def counted_prepared(*args: Any, **kwargs: Any) -> Any:
            self.prepared += 1
            return await prepared_execute(*args, **kwargs)

        async def counted_strawberry(*args: Any, **kwargs: Any) -> Any:
            self.strawberry += 1
            return await strawberry_execute(*args, **kwargs)

        monkeypatch.setattr(prepared, "execute", counted_prepared)
        monkeypatch.setattr(graphql.schema, "execute", counted_strawberry)


async def twice(client: httpx.AsyncClient, paths: Paths, body: dict[str, Any], token: str | None):
    """The request through Strawberry (its document is new), then as a prepared operation."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    before = (paths.strawberry, paths.prepared)
    first = await client.post("/graphql", json=body, headers=headers)
    second = await client.post("/graphql", json=body, headers=headers)
    assert (paths.strawberry, paths.prepared) == (before[0] + 1, before[1] + 1)
    return first, second


def same_answer(first: httpx.Response, second: httpx.Response) -> dict[str, Any]:
    assert first.status_code == second.status_code
    assert normal(first.json()) == normal(second.json())
    for header in ("content-type", "ratelimit-limit", "ratelimit-reset"):
        assert first.headers.get(header) == second.headers.get(header), header
    return second.json()


async def test_repeated_operations_are_prepared_and_answer_as_strawberry(
    backend, make_user, monkeypatch
):
    user = await make_user(credits=50)
    token = auth.issue_token(user, backend.settings)
    headers = {"authorization": f"Bearer {token}"}
    async with app_client(backend, monkeypatch) as client:
        paths = Paths(monkeypatch, graphql_of(client))
        good = {"input": {"prompt": "a teapot", "width": 64, "height": 64}}
        cases: list[tuple[dict[str, Any], str | None, str | None]] = [
            ({"query": "{ me { email role credits { available reserved } } }"}, token, None),
            ({"query": SEVERAL, "operationName": "Models"}, None, None),
            ({"query": CREATE, "variables": good}, token, None),
            ({"query": "{ me { id } }"}, None, "UNAUTHENTICATED"),
            (
                {"query": CREATE, "variables": {"input": {"prompt": "x", "numOutputs": 9}}},
                token,
                "BAD_USER_INPUT",
            ),
            # Refused before execution, by the input caps.
            (
                {"query": CREATE, "variables": {"input": {"prompt": "x" * 4001}}},
                token,
                "BAD_USER_INPUT",
            ),
            # Variables graphql-core cannot coerce.
            ({"query": CREATE, "variables": {"input": {"prompt": 7}}}, token, "BAD_USER_INPUT"),
            # Not text, refused by the input caps.
            (
                {"query": CREATE, "variables": {"input": {"prompt": "a\u0000b"}}},
                token,
                "BAD_USER_INPUT",
            ),
            # Over the result budget with these variables (and within it with others).
            ({"query": NESTED, "variables": {"n": 50}}, token, "BAD_USER_INPUT"),
            ({"query": NESTED, "variables": {"n": 2}}, token, None),
        ]
        for number, (body, caller, code) in enumerate(cases):
            # A comment makes each case's document new to the server.
            body = {**body, "query": f"{body['query']}\n# case {number}"}
            answer = same_answer(*await twice(client, paths, body, caller))
            if code is None:
                assert "errors" not in answer and answer["data"], answer
            else:
                assert answer["errors"][0]["extensions"]["code"] == code, answer
        # Another operation of a document seen before is prepared too.
        await client.post("/graphql", json={"query": SEVERAL, "operationName": "Models"})
        me = {"query": SEVERAL, "operationName": "Me"}
        prepared_before = paths.prepared
        prepared_me = await client.post("/graphql", json=me, headers=headers)
        assert paths.prepared == prepared_before + 1
        respelled = {**me, "query": SEVERAL + " "}
        same_answer(await client.post("/graphql", json=respelled, headers=headers), prepared_me)
        created = await client.post(
            "/graphql", json={"query": CREATE, "variables": good}, headers=headers
        )
        assert created.json()["data"]["createGeneration"]["status"] == "QUEUED"
        assert int(created.headers["ratelimit-remaining"]) >= 0


async def test_an_unexpected_error_is_masked_and_recorded_the_same_way(
    backend, make_user, monkeypatch
):
    user = await make_user()
    token = auth.issue_token(user, backend.settings)

    async def broken(user_id: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr("services.credits.get_balance", broken)
    async with app_client(backend, monkeypatch) as client:
        paths = Paths(monkeypatch, graphql_of(client))
        first, second = await twice(
            client, paths, {"query": "{ creditBalance { available } }"}, token
        )
    answer = same_answer(first, second)
    assert answer["errors"][0]["extensions"]["code"] == "INTERNAL"
    assert "secret" not in second.text
    assert answer["errors"][0]["extensions"]["requestId"] == second.headers["x-request-id"]


async def test_the_rate_limit_counts_and_refuses_prepared_operations(
    backend, make_user, monkeypatch
):
    user = await make_user(credits=50)
    token = auth.issue_token(user, backend.settings)
    body = {"query": CREATE, "variables": {"input": {"prompt": "a teapot"}}}
    headers = {"authorization": f"Bearer {token}"}
    async with app_client(backend, monkeypatch, rate_limit_per_user=2) as client:
        paths = Paths(monkeypatch, graphql_of(client))
        await client.post("/graphql", json=body, headers=headers)  # Strawberry, 1 of 2
        allowed = await client.post("/graphql", json=body, headers=headers)  # prepared, 2 of 2
        assert allowed.headers["ratelimit-remaining"] == "0"
        refused = await client.post("/graphql", json=body, headers=headers)  # prepared
        # The same refusal from Strawberry: another spelling of the document is new to it.
        respelled = {**body, "query": CREATE + " "}
        by_strawberry = await client.post("/graphql", json=respelled, headers=headers)
    assert (paths.strawberry, paths.prepared) == (2, 2)
    answer = same_answer(by_strawberry, refused)
    assert answer["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert answer["errors"][0]["extensions"]["retryAfter"] >= 1
    assert refused.headers["ratelimit-remaining"] == "0"


async def test_the_query_rate_limit_counts_and_refuses_prepared_operations(
    backend, make_user, monkeypatch
):
    user = await make_user()
    token = auth.issue_token(user, backend.settings)
    body = {"query": "{ me { id } creditBalance { available } }"}
    headers = {"authorization": f"Bearer {token}"}
    async with app_client(backend, monkeypatch, query_rate_limit_per_user=4) as client:
        paths = Paths(monkeypatch, graphql_of(client))
        first = await client.post("/graphql", json=body, headers=headers)  # Strawberry, 2 of 4
        assert first.headers["ratelimit-remaining"] == "2"
        allowed = await client.post("/graphql", json=body, headers=headers)  # prepared, 4 of 4
        assert allowed.headers["ratelimit-remaining"] == "0"
        refused = await client.post("/graphql", json=body, headers=headers)  # prepared
        respelled = {**body, "query": body["query"] + " "}
        by_strawberry = await client.post("/graphql", json=respelled, headers=headers)
    assert (paths.strawberry, paths.prepared) == (2, 2)
    answer = same_answer(by_strawberry, refused)
    assert answer["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert refused.headers["ratelimit-limit"] == "4"


async def test_prepared_operations_are_measured(backend, make_user, monkeypatch):
    async with app_client(backend, monkeypatch) as client:
        paths = Paths(monkeypatch, graphql_of(client))
        before = parse((await client.get("/metrics")).text)
        await twice(client, paths, {"query": "{ models { id } }"}, None)
        after = parse((await client.get("/metrics")).text)
    moved = value(after, "kiln_graphql_requests_total", operation_type="query", code="OK") - value(
        before, "kiln_graphql_requests_total", operation_type="query", code="OK"
    )
    assert moved == 2


async def test_gets_extensions_and_persisted_queries_are_prepared_too(
    backend, make_user, monkeypatch
):
    """A GET, a request with `extensions`, and a persisted query named by its hash alone (by
    POST or GET) are prepared once their document was seen, and answer as Strawberry does,
    refusals by the input caps and the rate limit included."""
    user = await make_user(credits=50)
    token = auth.issue_token(user, backend.settings)
    headers = {"authorization": f"Bearer {token}"}
    async with app_client(backend, monkeypatch, rate_limit_per_user=3) as client:
        paths = Paths(monkeypatch, graphql_of(client))
        query = "{ models { id kind } }"
        params = {"query": query}
        first = await client.get("/graphql", params=params)
        second = await client.get("/graphql", params=params)
        assert (paths.strawberry, paths.prepared) == (1, 1)
        assert same_answer(first, second)["data"]["models"]
        extended = {"query": f"{query}\n# extended", "extensions": {"x": 1}}
        same_answer(*await twice(client, paths, extended, None))

        def persisted(text: str) -> dict[str, Any]:
            digest = hashlib.sha256(text.encode()).hexdigest()
            return {"persistedQuery": {"version": 1, "sha256Hash": digest}}

        get_persisted = {"extensions": orjson.dumps(persisted(query)).decode()}
        with_text = await client.post(
            "/graphql", json={"query": query, "extensions": persisted(query)}
        )
        by_hash = await client.post("/graphql", json={"extensions": persisted(query)})
        by_hash_get = await client.get("/graphql", params=get_persisted)
        assert (paths.strawberry, paths.prepared) == (2, 5)
        same_answer(first, with_text)
        same_answer(first, by_hash)
        same_answer(first, by_hash_get)

        text = f"{CREATE}\n# persisted"
        too_long = {"input": {"prompt": "x" * 4001}}
        good = {"input": {"prompt": "a teapot"}}
        registered = await client.post(
            "/graphql",
            json={"query": text, "variables": too_long, "extensions": persisted(text)},
            headers=headers,
        )
        capped = await client.post(
            "/graphql", json={"variables": too_long, "extensions": persisted(text)}, headers=headers
        )
        answer = same_answer(registered, capped)
        assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        for _ in range(3):  # the rate limit (refusals by the input caps do not count)
            await client.post(
                "/graphql", json={"variables": good, "extensions": persisted(text)}, headers=headers
            )
        limited = await client.post(
            "/graphql", json={"variables": good, "extensions": persisted(text)}, headers=headers
        )
        by_strawberry = await client.post(
            "/graphql", json={"query": CREATE, "variables": good}, headers=headers
        )
    assert (paths.strawberry, paths.prepared) == (4, 10)
    answer = same_answer(by_strawberry, limited)
    assert answer["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_what_strawberry_still_answers(backend, make_user, monkeypatch):
    """New documents, other content types, batches, subscriptions and operation names the
    document does not have."""
    user = await make_user()
    token = auth.issue_token(user, backend.settings)
    headers = {"authorization": f"Bearer {token}"}
    async with app_client(backend, monkeypatch) as client:
        paths = Paths(monkeypatch, graphql_of(client))
        query = "{ models { id } }"
        await client.post("/graphql", json={"query": query})
        subscription = "subscription { creditBalanceChanged { available } }"
        await client.post("/graphql", json={"query": subscription}, headers=headers)
        requests = [
            client.post("/graphql", json=[{"query": query}]),
            client.post(
                "/graphql",
                content=f'{{"query": "{query}"}}',
                headers={"content-type": "text/plain"},
            ),
            client.post("/graphql", json={"query": query, "operationName": "Nope"}),
            client.post("/graphql", json={"query": subscription}, headers=headers),
        ]
        for request in requests:
            await request
    assert paths.prepared == 0


def test_only_a_schema_whose_extensions_are_all_known_is_served():
    per_operation: dict[type[SchemaExtension], Any] = {
        InputLimits: lambda e: None,
        ResultBudget: lambda e: None,
        OperationRateLimit: lambda e: None,
        GraphQLObservability: lambda e: None,
    }

    def attached(*extra: Any) -> PreparedOperations:
        schema = build_schema()
        schema.extensions = (*schema.extensions, GraphQLObservability, *extra)
        return PreparedOperations.attach(schema, per_operation, maxsize=10)

    assert attached().hooks == list(per_operation.values())

    class EveryField(SchemaExtension):
        def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
            return _next(root, info, *args, **kwargs)

    assert attached(EveryField).hooks is None
    assert attached(functools.partial(MaskErrors)).hooks is None
    schema = build_schema()  # no hook given for the observability extension
    schema.extensions = (*schema.extensions, GraphQLObservability)
    assert PreparedOperations.attach(schema, {InputLimits: lambda e: None}, 10).hooks is None


async def test_documents_are_remembered_up_to_the_cache_size(backend, monkeypatch):
    async with app_client(backend, monkeypatch, graphql_cache_size=2) as client:
        graphql = graphql_of(client)
        for field in ("id", "kind", "costPerOutput"):
            await client.post("/graphql", json={"query": f"{{ models {{ {field} }} }}"})
    assert graphql.prepared is not None
    assert graphql.prepared.get("{ models { id } }", None) is None  # the oldest went
    assert graphql.prepared.get("{ models { costPerOutput } }", None) is not None
