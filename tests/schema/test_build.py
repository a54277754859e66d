"""The assembled schema's resolvers see a typed context: each one that takes `info` declares it
`Info[Context, None]`, so mypy checks what it reads from `info.context`."""

from __future__ import annotations

import typing

import pytest
from graphql import GraphQLObjectType, build_schema
from strawberry.types import Info
from strawberry.types.base import StrawberryObjectDefinition

from schema.context import Context
from tests.support.schema import SCHEMA


def resolvers_taking_info() -> dict[str, typing.Any]:
    """`Type.python_name` -> the function of every resolver with an `info` parameter."""
    found = {}
    for name, named in build_schema(SCHEMA.as_str()).type_map.items():
        if name.startswith("__") or not isinstance(named, GraphQLObjectType):
            continue
        definition = SCHEMA.get_type_by_name(name)
        assert isinstance(definition, StrawberryObjectDefinition)
        for field in definition.fields:
            resolver = field.base_resolver
            if resolver is None or resolver.info_parameter is None:
                continue
            function = resolver.wrapped_func
            found[f"{name}.{field.python_name}"] = function
    return found


RESOLVERS = resolvers_taking_info()


def test_resolvers_taking_info_are_found():
    expected = {"Query.me", "Mutation.create_generation", "Generation.outputs"}
    assert expected | {"Subscription.generation_updated"} <= set(RESOLVERS)


@pytest.mark.parametrize("coordinate", sorted(RESOLVERS))
def test_every_resolver_declares_the_context_it_is_given(coordinate):
    function = RESOLVERS[coordinate]
    hints = typing.get_type_hints(function)
    info = next(hint for hint in hints.values() if typing.get_origin(hint) is Info)
    assert typing.get_args(info) == (Context, type(None))
