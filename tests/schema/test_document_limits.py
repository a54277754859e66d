"""Documents built to cost the most within the token cap: chains of fragments that each spread
the next several times, the same field selected again and again, hundreds of fragments on one
object. Each is refused or answered with work linear in its size, counted in function calls
(never timed); and the result-size budget refuses what could return too much."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from graphql import parse

from schema.build import build_schema
from schema.document_limits import (
    LIST_BOUNDS,
    limit_errors,
    list_fields,
    result_size,
    root_fields,
)
from settings import Settings
from tests.support.schema import SCHEMA, request_context
from tests.support.work import TooMuchWork, counted_calls, tokens

CAP = Settings().max_query_tokens


def chain(n: int, *, on: str = "Query", spreads: int = 2, body: str = "", last: str) -> str:
    """Fragments F0..Fn, each (but the last) spreading the next `spreads` times."""
    links = " ".join(
        f"fragment F{i} on {on} {{ {body} {' '.join([f'...F{i + 1}'] * spreads)} }}"
        for i in range(n)
    )
    return f"{links} fragment F{n} on {on} {{ {last} }}"


# Each family: a document of size n, the largest n that fits the cap found below.
FAMILIES: dict[str, Callable[[int], str]] = {
    # The issue's: 20 of these took 7 s to validate.
    "fragments each spreading the next twice": lambda n: (
        "query { ...F0 } " + chain(n, last="me { id }")
    ),
    "fragments each spreading the next four times": lambda n: (
        "query { ...F0 } " + chain(n, spreads=4, last="me { id }")
    ),
    "a doubling chain with a field in every link": lambda n: (
        "query { ...F0 } " + chain(n, body="me { id }", last="me { id }")
    ),
    "a doubling chain below a field": lambda n: (
        "query { me { ...F0 } } " + chain(n, on="User", body="id", last="email")
    ),
    "a chain of single spreads": lambda n: (
        "query { ...F0 } " + chain(n, spreads=1, last="me { id }")
    ),
    "the same field again and again": lambda n: "{ " + " ".join(["me { id }"] * n) + " }",
    "the same leaf again and again": lambda n: "{ me { " + " ".join(["id"] * n) + " } }",
    "many fragments selecting one field on one object": lambda n: (
        "{ generations { edges { node { "
        + " ".join(f"...B{i}" for i in range(n))
        + " } } } } "
        + " ".join(f"fragment B{i} on Generation {{ parent {{ id }} }}" for i in range(n))
    ),
    "aliased root fields sharing many fragments": lambda n: (
        "{ "
        + " ".join(f"a{i}: me {{ ...F0 }}" for i in range(30))
        + " } "
        + chain(n, on="User", spreads=1, body="id", last="email")
    ),
    "a tree of parents and children": lambda n: (
        "{ generations(first: 50) { edges { node { ...G0 } } } } "
        + " ".join(
            f"fragment G{i} on Generation {{ parent {{ ...G{i + 1} }} children {{ ...G{i + 1} }} }}"
            for i in range(n)
        )
        + f" fragment G{n} on Generation {{ id }}"
    ),
}


def largest(family: Callable[[int], str], cap: int = CAP) -> str:
    """The family's largest document within `cap` tokens."""
    n = 1
    while tokens(family(n * 2)) <= cap:
        n *= 2
    low, high = n, n * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if tokens(family(middle)) <= cap else (low, middle)
    return family(low)


# Calls per token of the whole operation (parsing, validation, every limiter, execution): the
# costliest family (the same leaf again and again) takes about 165, most about 70.
PER_TOKEN = 300
BASE = 20_000


async def run_counted(document: str, token: str | None, settings: Any) -> tuple[int, Any]:
    limit = PER_TOKEN * tokens(document) + BASE
    with counted_calls(limit) as calls:
        result = await SCHEMA.execute(document, context_value=request_context(settings, token))
    if calls.exceeded:
        raise TooMuchWork(f"more than {limit} calls")
    return calls.count, result


@pytest.mark.parametrize("family", FAMILIES)
async def test_the_costliest_documents_cost_linear_work(world, family):
    """Each family at half and at full size within the token cap: refused or answered (never
    INTERNAL), with work proportional to its tokens."""
    build = FAMILIES[family]
    full = largest(build, CAP - 2)  # room for the name given below
    half = largest(build, CAP // 2)
    counts = []
    for number, document in enumerate((half, full)):
        # A name makes the document new to the parser and validation caches.
        name = f"Q{number}_{uuid.uuid4().hex}"
        named = document.replace("query {", f"query {name} {{", 1)
        if named.startswith("{"):
            named = f"query {name} {named}"
        try:
            count, result = await run_counted(named, world.tokens["other"], world.settings)
        except TooMuchWork as stopped:
            pytest.fail(f"{family}, {tokens(named)} tokens: {stopped}")
        for error in result.errors or ():
            assert error.extensions["code"] == "BAD_USER_INPUT", error
        assert "tokens" not in str(result.errors), "not within the token cap"
        counts.append(count / tokens(named))
    # Twice the tokens, about twice the calls (not four times, not 2^n times).
    assert counts[1] <= counts[0] * 1.5 + 10, counts


def test_the_issues_document_is_refused_by_the_budget_not_after_seconds():
    document = "query { ...F0 } " + chain(20, last="me { id }")
    parsed = parse(document)
    with counted_calls(20_000):
        assert limit_errors(parsed, max_depth=12, max_aliases=30) == []
        operation = parsed.definitions[0]
        assert [f.name.value for f in root_fields(parsed, operation)] == ["me"]  # type: ignore[arg-type]
        assert result_size(SCHEMA._schema, parsed, operation, {}) == 2**20  # type: ignore[arg-type]


def test_depth_and_aliases_count_every_spread_of_a_fragment():
    document = parse(
        "query { ...A ...A } fragment A on Query { x: me { ...B } } "
        "fragment B on User { credits { available } }"
    )
    assert limit_errors(document, max_depth=2, max_aliases=2) == []
    errors = [e.message for e in limit_errors(document, max_depth=1, max_aliases=1)]
    assert errors == [
        "'anonymous' exceeds maximum operation depth of 1",
        "2 aliases found. Allowed: 1",
    ]


def test_every_list_field_has_a_bound():
    """A list of objects (or a connection taking `first`) added to the schema must get a row in
    LIST_BOUNDS, and a row must not outlive its field."""
    fields = list_fields(SCHEMA._schema)
    assert fields - set(LIST_BOUNDS) == set(), "add these to LIST_BOUNDS"
    assert set(LIST_BOUNDS) - fields == set(), "these are no longer in the schema"


PAGE = """query Page($n: Int!) {
  generations(first: $n) {
    edges { node { id outputs { url } children { id outputs { url } } } }
    pageInfo { hasNextPage }
  }
}"""


@pytest.mark.parametrize(
    "variables,objects",
    [
        # Per page item: edge, node, 4 outputs, 8 children with 4 outputs each; plus the
        # connection and its page info, counted once per item too.
        ({"n": 1}, 1 + 1 + 1 + 4 + 8 * 5 + 1),
        ({"n": 40}, 40 * 48),
        ({"n": 500}, 50 * 48),  # more than a page is counted as a page (then refused)
    ],
)
def test_the_result_size_is_the_product_of_the_bounds_along_each_path(variables, objects):
    document = parse(PAGE)
    size = result_size(SCHEMA._schema, document, document.definitions[0], variables)  # type: ignore[arg-type]
    assert size == objects


async def test_a_result_that_could_be_too_large_is_refused_before_it_runs(world):
    settings = world.settings.model_copy(update={"max_result_objects": 1000})
    schema = build_schema(settings)
    token = world.tokens["other"]
    refused = await schema.execute(
        PAGE, variable_values={"n": 40}, context_value=request_context(settings, token)
    )
    assert refused.errors is not None
    assert refused.errors[0].extensions == {"code": "BAD_USER_INPUT"}
    assert "1920 objects" in refused.errors[0].message
    fine = await schema.execute(
        PAGE, variable_values={"n": 20}, context_value=request_context(settings, token)
    )
    assert fine.errors is None, fine.errors
    # The same document again with a larger page: sizes are remembered per variables.
    again = await schema.execute(
        PAGE, variable_values={"n": 40}, context_value=request_context(settings, token)
    )
    assert again.errors is not None and "1920 objects" in again.errors[0].message
    # Aliases are paths of their own: 2 x 20 x (connection, edge).
    twice = "query { a: generations { edges { cursor } } b: generations { edges { cursor } } }"
    tight = build_schema(settings.model_copy(update={"max_result_objects": 79}))
    answer = await tight.execute(twice, context_value=request_context(settings, token))
    assert answer.errors is not None and "80 objects" in answer.errors[0].message
