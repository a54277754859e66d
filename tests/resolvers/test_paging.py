"""Every connection field pages the one way (resolvers/paging.py): `first: Int = 20` (null
meaning the default, at most 50) and `after: String`, and the result-size budget counts it by
its `first` (schema/document_limits.py)."""

from __future__ import annotations

import pytest
from graphql import GraphQLField, GraphQLObjectType, build_schema, get_named_type, print_ast
from graphql.utilities import get_default_value_ast

from resolvers.paging import DEFAULT_FIRST, page_size
from schema.document_limits import FIRST, LIST_BOUNDS
from services.errors import BadUserInput
from services.pagination import MAX_PAGE
from tests.support.schema import SCHEMA

LIVE = build_schema(SCHEMA.as_str())
# "Type.field" of every field that returns a connection, with the field.
CONNECTIONS: dict[str, GraphQLField] = {
    f"{type_name}.{field_name}": field
    for type_name, named in LIVE.type_map.items()
    if isinstance(named, GraphQLObjectType) and not type_name.startswith("__")
    for field_name, field in named.fields.items()
    if get_named_type(field.type).name.endswith("Connection")
}
CONNECTION_FIELDS = sorted(CONNECTIONS)


def test_the_schema_has_connections():
    assert "Query.generations" in CONNECTION_FIELDS
    assert "Query.notifications" in CONNECTION_FIELDS


@pytest.mark.parametrize("coordinate", CONNECTION_FIELDS)
def test_every_connection_field_takes_first_and_after_the_one_way(coordinate):
    field = CONNECTIONS[coordinate]
    first, after = field.args["first"], field.args["after"]
    default = get_default_value_ast(first)
    assert (str(first.type), default and print_ast(default)) == ("Int", str(DEFAULT_FIRST))
    # The description comes with resolvers.paging.First: the field uses it.
    assert first.description == f"How many, 1 to {MAX_PAGE}; {DEFAULT_FIRST} when absent or null."
    assert str(after.type) == "String"


@pytest.mark.parametrize("coordinate", CONNECTION_FIELDS)
def test_every_connection_field_is_counted_by_its_first(coordinate):
    connection = get_named_type(CONNECTIONS[coordinate].type)
    assert LIST_BOUNDS.get(coordinate) == FIRST
    assert LIST_BOUNDS.get(f"{connection.name}.edges") == 1


def test_null_is_the_default_and_the_size_is_bounded():
    assert page_size(None) == DEFAULT_FIRST
    assert page_size(1) == 1 and page_size(MAX_PAGE) == MAX_PAGE
    for wrong in (0, -1, MAX_PAGE + 1):
        with pytest.raises(BadUserInput) as refused:
            page_size(wrong)
        assert refused.value.field == "first"
