"""The fast path changes how an answer is computed, never the answer: the same requests to a
server with FAST_PATH_ENABLED on and to one with it off get the same status and the same JSON,
data and errors alike (messages, paths, extensions.code). Each request is sent twice, so that
with the fast path on the second goes as a prepared operation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.support.app import app_client
from tests.support.fast_path import PAGE
from web.graphql_app import KilnGraphQL

ONE = "query One($id: ID!) { generation(id: $id) { id status outputs { url } error { code } } }"
CREATE = """
mutation Create($input: CreateGenerationInput!) {
  createGeneration(input: $input) { __typename status cost version progress outputs { url } }
}
"""

# (name, body, authenticated)
REQUESTS: list[tuple[str, dict[str, Any], bool]] = [
    ("a page with outputs", {"query": PAGE, "variables": {"first": 10, "withOutputs": True}}, True),
    ("a page", {"query": PAGE, "variables": {"first": 2, "withOutputs": False}}, True),
    ("a balance", {"query": "{ creditBalance { __typename balance reserved } }"}, True),
    ("models", {"query": "{ models { id kind costPerOutput } }"}, False),
    ("not signed in", {"query": "{ me { id email } }"}, False),
    ("someone else's", {"query": ONE, "variables": {"id": str(uuid.uuid4())}}, True),
    ("a malformed id", {"query": ONE, "variables": {"id": "not-an-id"}}, True),
    ("a missing variable", {"query": ONE}, True),
    ("an unknown field", {"query": "{ me { id shoeSize } }"}, True),
    ("a bad cursor", {"query": '{ generations(after: "x") { edges { cursor } } }'}, True),
    (
        "a refused input",
        {"query": CREATE, "variables": {"input": {"prompt": "a", "numOutputs": 999}}},
        True,
    ),
    (
        "a created generation, then its replay",
        {"query": CREATE, "variables": {"input": {"prompt": "a kiln", "idempotencyKey": "k-1"}}},
        True,
    ),
]


def endpoint(client: Any) -> KilnGraphQL:
    app = client._transport.app
    return next(r.endpoint for r in app.routes if isinstance(r.endpoint, KilnGraphQL))


async def test_the_same_json_with_the_fast_path_on_and_off(backend, monkeypatch, owner):
    """Each request goes to both servers before the next (a creation is then replayed)."""
    answers: dict[bool, list[Any]] = {True: [], False: []}
    async with (
        app_client(backend, monkeypatch, fast_path_enabled=True) as on,
        app_client(backend, monkeypatch, fast_path_enabled=False) as off,
    ):
        assert endpoint(on).prepared is not None and endpoint(off).prepared is None
        for name, body, authenticated in REQUESTS:
            headers = {"authorization": f"Bearer {owner}"} if authenticated else {}
            for enabled, client in ((True, on), (False, off)):
                for attempt in range(2):
                    response = await client.post("/graphql", json=body, headers=headers)
                    answers[enabled].append((name, attempt, response.status_code, response.json()))
    for fast, plain in zip(answers[True], answers[False], strict=True):
        assert fast == plain
    by_name = {name: body for name, attempt, _, body in answers[True] if attempt == 0}
    # The set covers data and errors both.
    assert len(by_name["a page with outputs"]["data"]["generations"]["edges"]) == 4
    codes = {
        name: body["errors"][0]["extensions"]["code"]
        for name, body in by_name.items()
        if body.get("errors")
    }
    expected = {"not signed in", "a missing variable", "an unknown field", "a bad cursor"}
    assert codes.keys() >= expected
    assert "a refused input" in codes and "a created generation, then its replay" not in codes


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_setting_decides_which_engine_answers(backend, monkeypatch, owner, enabled):
    """Off, nothing of the package runs: no prepared operation, no projecting executor."""
    async with app_client(backend, monkeypatch, fast_path_enabled=enabled) as client:
        graphql = endpoint(client)
        executor = getattr(graphql.schema, "execution_context_class", None)
    assert (graphql.prepared is not None) is enabled
    assert executor.__module__.startswith("fastpath") is enabled, executor
