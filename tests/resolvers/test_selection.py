"""Whether a resolver's selection reaches a field (resolvers/selection.py), as the schema's
`generations` reads outputs with its page only when they are asked for."""

from __future__ import annotations

import pytest
import strawberry
from strawberry.types import Info

from resolvers.selection import selects

_answers: list[bool] = []


@strawberry.type
class Output:
    url: str = "u"


@strawberry.type
class Node:
    id: str = "n"
    outputs: list[Output] = strawberry.field(default_factory=lambda: [Output()])


@strawberry.type
class Edge:
    node: Node = strawberry.field(default_factory=Node)


@strawberry.type
class Page:
    edges: list[Edge] = strawberry.field(default_factory=lambda: [Edge()])
    total: int = 1


@strawberry.type
class Query:
    @strawberry.field
    def page(self, info: Info) -> Page:
        _answers.append(selects(info, "edges", "node", "outputs"))
        return Page()


SCHEMA = strawberry.Schema(Query)


@pytest.mark.parametrize(
    ("document", "variables", "reaches"),
    [
        ("{ page { edges { node { outputs { url } } } } }", {}, True),
        ("{ page { edges { node { id } } total } }", {}, False),
        ("{ page { total } }", {}, False),
        ("{ page { edges { node { ...N } } } } fragment N on Node { outputs { url } }", {}, True),
        ("{ page { ... on Page { edges { ... { node { outputs { url } } } } } } }", {}, True),
        ("{ page { edges { node { id o: outputs { url } } } } }", {}, True),  # an alias
        ("{ page { edges { node { outputs @skip(if: true) { url } } } } }", {}, False),
        ("{ page { edges @include(if: false) { node { outputs { url } } } } }", {}, False),
        (
            "query($s: Boolean!) { page { edges { node { outputs @skip(if: $s) { url } } } } }",
            {"s": True},
            False,
        ),
        (
            "query($s: Boolean!) { page { edges { node { outputs @skip(if: $s) { url } } } } }",
            {"s": False},
            True,
        ),
        (
            "{ page { edges { node { id } } } p2: page { edges { node { outputs { url } } } } }",
            {},
            None,
        ),
    ],
)
def test_selects_follows_fragments_aliases_and_directives(document, variables, reaches):
    _answers.clear()
    result = SCHEMA.execute_sync(document, variable_values=variables)
    assert result.errors is None
    if reaches is None:  # two root fields: each is answered for its own selection
        assert _answers == [False, True]
    else:
        assert _answers == [reaches]
