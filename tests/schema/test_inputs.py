"""Flat inputs are built from graphql-core's coerced value exactly as Strawberry would."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry
from strawberry.types.base import get_object_definition

from schema.inputs import CreateGenerationInput, flat_input


@strawberry.type
class Query:
    @strawberry.field
    def echo(self, input: CreateGenerationInput) -> str:
        return repr(input)


SCHEMA = strawberry.Schema(query=Query)
VARIABLES = "query Q($i: CreateGenerationInput!) { echo(input: $i) }"
CASES: list[tuple[str, dict[str, Any] | None]] = [
    ('{ echo(input: {prompt: "p"}) }', None),
    ('{ echo(input: {prompt: "p", kind: VIDEO, numOutputs: 3, negativePrompt: null}) }', None),
    (
        VARIABLES,
        {
            "i": {
                "prompt": "a fox",
                "kind": "TEXT",
                "model": "m",
                "preset": "express_enhance",
                "negativePrompt": "blur",
                "inputImageUrl": "https://example.com/a.png",
                "strength": 0.5,
                "numOutputs": 2,
                "width": 64,
                "height": 32,
                "seed": 7,
                "idempotencyKey": "k",
            }
        },
    ),
    (VARIABLES, {"i": {"prompt": "p", "seed": None, "strength": 1}}),
]


@pytest.mark.parametrize("query,variables", CASES)
def test_the_same_value_as_strawberrys_own_conversion(query, variables, monkeypatch):
    flat = SCHEMA.execute_sync(query, variable_values=variables)
    monkeypatch.setattr(get_object_definition(CreateGenerationInput), "from_input", None)
    converted = SCHEMA.execute_sync(query, variable_values=variables)
    assert flat.errors is None and converted.errors is None
    assert flat.data == converted.data


def test_only_inputs_of_scalars_and_enums_can_be_flat():
    @strawberry.input
    class Inner:
        value: int

    @strawberry.input
    class Outer:
        inner: Inner

    @strawberry.input
    class Many:
        values: list[int]

    for nested in (Outer, Many):
        with pytest.raises(TypeError, match="not a scalar or an enum"):
            flat_input(nested)
