"""The generations connection loads outputs, parents and children through DataLoaders: the
number of SQL queries does not grow with the page size."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from tortoise import connections

from schema.build import build_schema
from services import auth, generations
from services.catalogue import load_catalogue
from services.generations import NewGeneration, StoredOutput
from tests.support.schema import request_context

QUERY = """
query Page($first: Int!) {
  generations(first: $first) {
    edges { node { id status outputs { url width } parent { id } children { id } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@pytest.fixture
def count_queries(monkeypatch, backend):
    """Statements sent to the database: on PostgreSQL counted at asyncpg (reads in fixed SQL
    go to it directly), elsewhere at Tortoise's client."""
    counter = {"n": 0}
    if backend.name == "postgres":
        execute, do_execute = asyncpg.Connection.execute, asyncpg.Connection._do_execute

        async def counted_execute(self, query, *args: Any, **kwargs: Any):
            counter["n"] += not args  # with arguments it goes through _do_execute
            return await execute(self, query, *args, **kwargs)

        def counted_do_execute(self, *args: Any, **kwargs: Any):
            counter["n"] += 1
            return do_execute(self, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, "execute", counted_execute)
        monkeypatch.setattr(asyncpg.Connection, "_do_execute", counted_do_execute)
        return counter
    client_class = type(connections.get("default"))
    for name in ("execute_query", "execute_query_dict"):
        original = getattr(client_class, name)

        async def counted(self, *args: Any, _original=original, **kwargs: Any):
            counter["n"] += 1
            return await _original(self, *args, **kwargs)

        monkeypatch.setattr(client_class, name, counted)
    return counter


async def test_query_count_does_not_grow_with_page_size(make_user, backend, count_queries):
    user = await make_user(credits=20)
    for _ in range(12):
        generation = await generations.create_generation(
            user, NewGeneration(prompt="x"), load_catalogue()
        )
        await generations.start(generation.id)
        await generations.complete(
            generation.id,
            [StoredOutput(0, f"{user.id}/{generation.id}/0.png", "image/png", 1, 64, 64)],
            "local",
        )
    token = auth.issue_token(user, backend.settings)
    schema = build_schema()
    counts = {}
    for first in (2, 12):
        count_queries["n"] = 0
        result = await schema.execute(
            QUERY,
            variable_values={"first": first},
            context_value=request_context(backend.settings, token),
        )
        assert result.errors is None and result.data is not None
        edges = result.data["generations"]["edges"]
        assert len(edges) == first
        assert all(
            e["node"]["outputs"][0]["url"].startswith("http://kiln.test/media/") for e in edges
        )
        counts[first] = count_queries["n"]
    assert counts[2] == counts[12]
    assert 2 <= counts[12] <= 5  # user, page, outputs, children (parents are all null)


async def test_first_over_the_cap_is_bad_user_input(make_user, backend):
    user = await make_user()
    result = await build_schema().execute(
        QUERY,
        variable_values={"first": 51},
        context_value=request_context(backend.settings, auth.issue_token(user, backend.settings)),
    )
    assert result.errors and result.errors[0].extensions == {
        "code": "BAD_USER_INPUT",
        "field": "first",
    }
