"""The one connection type (schema/types.py): built from a service's Page, named as the contract
names connections, with each edge's cursor encoded only when a client asks for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import strawberry
from graphql import build_schema
from strawberry.types.base import StrawberryObjectDefinition

from schema.types import Connection, Edge
from services.pagination import Page
from tests.support.schema import SCHEMA


@dataclass(frozen=True)
class Row:
    name: str


@strawberry.type
class Widget:
    name: str

    @classmethod
    def of(cls, row: Row) -> Widget:
        return cls(name=row.name)


@strawberry.type
class Query:
    @strawberry.field
    def widgets(self, info: strawberry.Info) -> Connection[Widget]:
        page: Page[Row] = info.context["page"]
        return Connection.of(page, Widget.of)


WIDGETS = strawberry.Schema(query=Query)


def counted_page(names: list[str], has_next: bool) -> tuple[Page[Row], list[str]]:
    """A page whose cursor function records every row it encodes."""
    encoded: list[str] = []

    def cursor_of(row: Row) -> str:
        encoded.append(row.name)
        return f"cursor-{row.name}"

    return Page([Row(n) for n in names], has_next, cursor_of), encoded


def run(query: str, page: Page[Row]) -> Any:
    result = WIDGETS.execute_sync(query, context_value={"page": page})
    assert result.errors is None, result.errors
    return result.data


def test_a_connection_is_named_and_shaped_as_the_contract_writes_connections():
    sdl = WIDGETS.as_str()
    assert "type WidgetConnection {\n  edges: [WidgetEdge!]!\n  pageInfo: PageInfo!\n}" in sdl
    assert "type WidgetEdge {\n  cursor: String!\n  node: Widget!\n}" in sdl
    assert "type PageInfo {\n  hasNextPage: Boolean!\n  endCursor: String\n}" in sdl


def test_edges_and_page_info_come_from_the_page():
    page, _ = counted_page(["a", "b"], has_next=True)
    data = run(
        "{ widgets { edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }", page
    )
    assert data == {
        "widgets": {
            "edges": [
                {"cursor": "cursor-a", "node": {"name": "a"}},
                {"cursor": "cursor-b", "node": {"name": "b"}},
            ],
            "pageInfo": {"hasNextPage": True, "endCursor": "cursor-b"},
        }
    }


def test_edge_cursors_are_encoded_only_when_asked_for():
    """A client paging through usually reads pageInfo.endCursor alone: one encoding a page."""
    page, encoded = counted_page(["a", "b", "c"], has_next=False)
    run("{ widgets { edges { node { name } } pageInfo { endCursor } } }", page)
    assert encoded == ["c"]
    encoded.clear()
    run("{ widgets { edges { cursor } } }", page)
    assert sorted(encoded) == ["a", "b", "c", "c"]  # the end cursor, and each edge's


def test_an_empty_page_has_no_edges_and_no_end_cursor():
    page, encoded = counted_page([], has_next=False)
    data = run("{ widgets { edges { cursor } pageInfo { hasNextPage endCursor } } }", page)
    assert data == {"widgets": {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}}
    assert encoded == []


CONNECTION_TYPES = sorted(
    name for name in build_schema(SCHEMA.as_str()).type_map if name.endswith(("Connection", "Edge"))
)


@pytest.mark.parametrize("name", CONNECTION_TYPES)
def test_every_connection_of_the_schema_is_the_one_connection_type(name):
    """Kiln's connections and edges are specialisations of Connection and Edge, so each is
    built the one way (Connection.of) rather than by hand."""
    definition = SCHEMA.get_type_by_name(name)
    assert isinstance(definition, StrawberryObjectDefinition)
    generic = Connection if name.endswith("Connection") else Edge
    assert definition.concrete_of is not None, f"{name} is written by hand"
    assert definition.concrete_of.origin is generic
