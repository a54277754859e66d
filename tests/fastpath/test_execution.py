"""Root fields of queries and mutations completed by a projection (fastpath/execution.py) give
exactly what graphql-core's field-by-field completion gives, errors included; the projection
really runs, keeps DataLoader batching, and is shared by requests that differ only in inputs.

Each case runs the same operation on two schemas side by side: Kiln's, and Kiln's with
FAST_PATH_ENABLED off (Strawberry's own execution context)."""

from __future__ import annotations

from typing import Any

import pytest
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from fastpath import projection
from fastpath.execution import ProjectingExecutionContext
from schema.build import build_schema
from services import auth
from services.generations import pages as generation_pages
from storage import get_store
from tests.support.fast_path import PAGE
from tests.support.schema import request_context

CREATE = """
mutation Create($input: CreateGenerationInput!) {
  createGeneration(input: $input) { __typename status cost version progress outputs { url } }
}
"""


def plain_schema(settings: Any) -> Any:
    """Kiln's schema without the projecting execution context."""
    return build_schema(settings.model_copy(update={"fast_path_enabled": False}))


async def both(backend: Any, token: str, query: str, variables: dict[str, Any]) -> tuple[Any, Any]:
    results = []
    for schema in (build_schema(backend.settings), plain_schema(backend.settings)):
        results.append(
            await schema.execute(
                query,
                variable_values=variables,
                context_value=request_context(backend.settings, token),
            )
        )
    return results[0], results[1]


def formatted(result: Any) -> dict[str, Any]:
    return {
        "data": result.data,
        "errors": [e.formatted for e in result.errors] if result.errors else None,
    }


@pytest.fixture
def completions(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many objects graphql-core completed field by field."""
    counter = {"objects": 0}
    original = StrawberryGraphQLCoreExecutionContext.complete_object_value

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        counter["objects"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StrawberryGraphQLCoreExecutionContext, "complete_object_value", counted)
    return counter


@pytest.mark.parametrize("with_outputs", [True, False])
async def test_a_page_is_the_same_as_graphql_core_gives(
    backend: Any, owner: str, with_outputs: bool
) -> None:
    variables = {"first": 10, "withOutputs": with_outputs}
    projected, plain = await both(backend, owner, PAGE, variables)
    assert projected.errors is None
    assert formatted(projected) == formatted(plain)
    nodes = [e["node"] for e in projected.data["generations"]["edges"]]
    assert len(nodes) == 4 and {n["status"] for n in nodes} == {"COMPLETED", "FAILED"}
    assert ("outputs" in nodes[0]) is with_outputs


async def test_a_page_is_completed_without_graphql_core_per_field(
    backend: Any, owner: str, completions: dict[str, int]
) -> None:
    result = await build_schema(backend.settings).execute(
        PAGE,
        variable_values={"first": 10, "withOutputs": True},
        context_value=request_context(backend.settings, owner),
    )
    assert result.errors is None
    assert completions["objects"] == 0
    await plain_schema(backend.settings).execute(
        PAGE,
        variable_values={"first": 10, "withOutputs": True},
        context_value=request_context(backend.settings, owner),
    )
    assert completions["objects"] > 0  # the counter does see graphql-core's completion


async def test_an_error_below_the_root_field_is_reported_as_graphql_core_reports_it(
    backend: Any, owner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("store is down")

    monkeypatch.setattr(type(get_store()), "url_for", broken)
    projected, plain = await both(backend, owner, PAGE, {"first": 10, "withOutputs": True})
    assert projected.errors  # masked, with the code and path of the failing field
    assert formatted(projected) == formatted(plain)
    assert projected.errors[0].extensions["code"] == "INTERNAL"
    assert "store is down" not in str(formatted(projected))


async def test_a_mutation_result_is_the_same_as_graphql_core_gives(
    backend: Any, make_user: Any
) -> None:
    user = await make_user(credits=50)
    token = auth.issue_token(user, backend.settings)
    variables = {"input": {"prompt": "a lighthouse", "width": 64, "height": 64}}
    projected, plain = await both(backend, token, CREATE, variables)
    assert projected.errors is None
    assert formatted(projected) == formatted(plain)
    assert projected.data["createGeneration"]["status"] == "QUEUED"


async def test_requests_differing_only_in_inputs_share_one_projection(
    backend: Any, make_user: Any
) -> None:
    user = await make_user(credits=50)
    token = auth.issue_token(user, backend.settings)
    schema = build_schema(backend.settings)
    compiled: list[Any] = []
    original = projection._compile

    def counted(raw: Any) -> Any:
        compiled.append(raw)
        return original(raw)

    try:
        projection._compile = counted
        for prompt in ("one", "two", "three"):
            result = await schema.execute(
                CREATE,
                variable_values={"input": {"prompt": prompt, "width": 64, "height": 64}},
                context_value=request_context(backend.settings, token),
            )
            assert result.errors is None
    finally:
        projection._compile = original
    assert len(compiled) <= 1  # none when an earlier test already compiled this document


async def test_directives_on_variables_get_one_projection_per_value(
    backend: Any, owner: str, completions: dict[str, int]
) -> None:
    schema = build_schema(backend.settings)
    shapes = []
    for with_outputs in (True, False, True):
        result = await schema.execute(
            PAGE,
            variable_values={"first": 2, "withOutputs": with_outputs},
            context_value=request_context(backend.settings, owner),
        )
        assert result.errors is None and result.data is not None
        shapes.append("outputs" in result.data["generations"]["edges"][0]["node"])
    assert shapes == [True, False, True]
    assert completions["objects"] == 0


def test_kiln_schema_executes_with_the_projecting_context(backend: Any) -> None:
    # A subclass: schema/build.py's KilnExecution (no reference cycle per operation).
    assert issubclass(
        build_schema(backend.settings).execution_context_class, ProjectingExecutionContext
    )


@pytest.mark.parametrize(
    ("selection", "fragment", "reads_outputs"),
    [
        ("edges { node { id outputs { url } } }", "", True),
        ("edges { node { id files: outputs { url } } }", "", True),
        ("edges { ...Edge }", "fragment Edge on GenerationEdge { node { outputs { url } } }", True),
        ("edges { node { id outputs @include(if: false) { url } } }", "", False),
        ("edges { cursor node { id } } pageInfo { endCursor }", "", False),
    ],
)
async def test_a_page_reads_outputs_with_its_rows_only_when_selected(
    backend: Any,
    owner: str,
    monkeypatch: pytest.MonkeyPatch,
    selection: str,
    fragment: str,
    reads_outputs: bool,
) -> None:
    asked: list[bool] = []
    original = generation_pages.list_generations

    async def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["with_outputs"])
        return await original(*args, **kwargs)

    monkeypatch.setattr(generation_pages, "list_generations", spy)
    query = "query { generations(first: 10) { " + selection + " } } " + fragment
    projected, plain = await both(backend, owner, query, {})
    assert projected.errors is None
    assert formatted(projected) == formatted(plain)
    assert asked == [reads_outputs, reads_outputs]


async def test_a_page_read_with_its_outputs_needs_no_dataloader(backend: Any, owner: str) -> None:
    context = request_context(backend.settings, owner)
    result = await build_schema(backend.settings).execute(
        PAGE, variable_values={"first": 10, "withOutputs": True}, context_value=context
    )
    assert result.errors is None and result.data is not None
    edges = result.data["generations"]["edges"]
    assert sum(len(edge["node"]["outputs"]) for edge in edges) == 4
    assert "outputs" not in vars(context.loaders)  # made on first use: never used


async def test_edge_cursors_are_the_page_cursors(backend: Any, owner: str) -> None:
    query = "query { generations(first: 2) { edges { cursor } pageInfo { endCursor } } }"
    projected, plain = await both(backend, owner, query, {})
    assert formatted(projected) == formatted(plain) and projected.data is not None
    connection = projected.data["generations"]
    assert connection["pageInfo"]["endCursor"] == connection["edges"][-1]["cursor"]
    later = await build_schema(backend.settings).execute(
        "query($after: String) { generations(first: 10, after: $after) { edges { cursor } } }",
        variable_values={"after": connection["edges"][0]["cursor"]},
        context_value=request_context(backend.settings, owner),
    )
    assert later.errors is None and later.data is not None
    assert later.data["generations"]["edges"][0] == connection["edges"][1]
