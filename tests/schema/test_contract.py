"""The live schema keeps the GraphQL contract: every type, field, argument, nullability and
default that `contract.graphql` (in the shared design folder) fixes is served exactly so, as
the SDL that codegen reads (`manage.py schema`, GET /graphql/schema.graphql) and as
introspection sees it. Kiln may add types, fields, optional arguments, optional input fields
and enum values; it may not change or drop anything the contract names.

`contract-additions.graphql` joins the comparison part by part: every coordinate listed in
SERVED_ADDITIONS must be served as written there, and anything else of it that the live schema
already has (a type or a field of the same name) is held to it too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    IntrospectionQuery,
    build_client_schema,
    build_schema,
    find_breaking_changes,
    get_introspection_query,
    is_non_null_type,
    print_ast,
)
from graphql.utilities import get_default_value_ast

from models.user import Role
from schema.build import build_schema as build_kiln_schema
from services import auth
from settings import Settings
from tests.support.schema import request_context

ROOT = Path(__file__).resolve().parents[2]

# Coordinates of contract-additions.graphql that Kiln serves: a type's name (the whole type)
# or `Type.field` (a field that an `extend type` adds). Add them as their issues land.
SERVED_ADDITIONS: tuple[str, ...] = ()


def design_dir() -> Path:
    """`../shared/design` beside the project root (the main checkout, CI); from a git worktree
    further down, the nearest ancestor's. Read-only; a missing folder fails the test (the
    contract is what the schema is checked against, never optional)."""
    for parent in ROOT.parents:
        folder = parent / "shared" / "design"
        if (folder / "contract.graphql").is_file():
            return folder
    pytest.fail(
        f"contract.graphql not found: expected it in {ROOT.parent / 'shared' / 'design'} "
        "(../shared/design/ from the project root)",
        pytrace=False,
    )


@dataclass(frozen=True)
class Contract:
    contract: GraphQLSchema  # contract.graphql alone
    combined: GraphQLSchema  # with contract-additions.graphql


@pytest.fixture(scope="module")
def contract() -> Contract:
    folder = design_dir()
    text = (folder / "contract.graphql").read_text()
    additions = folder / "contract-additions.graphql"
    if not additions.is_file():
        pytest.fail(f"{additions} is missing", pytrace=False)
    return Contract(build_schema(text), build_schema(text + "\n" + additions.read_text()))


def sdl_schema() -> GraphQLSchema:
    """What `manage.py schema` prints and GET /graphql/schema.graphql serves."""
    return build_schema(build_kiln_schema().as_str())


async def introspected_schema() -> GraphQLSchema:
    """What a client (GraphiQL, codegen pointed at /graphql) sees by introspection."""
    result = await build_kiln_schema().execute(
        get_introspection_query(input_value_deprecation=True),
        context_value=request_context(Settings()),
    )
    assert result.errors is None and result.data is not None, result.errors
    return build_client_schema(cast(IntrospectionQuery, result.data))


def _default(value: GraphQLArgument | GraphQLInputField) -> str | None:
    literal = get_default_value_ast(value)
    return None if literal is None else print_ast(literal)


def _fields(named: GraphQLNamedType) -> dict[str, object]:
    fields = getattr(named, "fields", None)
    return dict(fields) if fields else {}


def fixed(contract: Contract, live: GraphQLSchema) -> Iterator[tuple[str, str | None]]:
    """(type, field or None for the whole type) of everything the comparison holds live to:
    all of the contract, and the additions that are served (listed, or present live)."""
    for name, named in contract.combined.type_map.items():
        if name.startswith("__"):
            continue
        base = contract.contract.type_map.get(name)
        if base is not None:
            yield name, None
            extended = [f for f in _fields(named) if f not in _fields(base)]
        else:
            if name in SERVED_ADDITIONS or name in live.type_map:
                yield name, None
            extended = []
        for field in extended:
            coordinate = f"{name}.{field}"
            live_type = live.type_map.get(name)
            if coordinate in SERVED_ADDITIONS or (live_type and field in _fields(live_type)):
                yield name, field


def differences(contract: Contract, live: GraphQLSchema) -> list[str]:
    found: list[str] = []
    for name, only_field in fixed(contract, live):
        expected = contract.combined.type_map[name]
        actual = live.type_map.get(name)
        if actual is None:
            found.append(f"{name}: type missing")
            continue
        if type(actual) is not type(expected):
            found.append(f"{name}: is a {type(actual).__name__}, not a {type(expected).__name__}")
            continue
        if isinstance(expected, GraphQLEnumType):
            assert isinstance(actual, GraphQLEnumType)
            missing = sorted(set(expected.values) - set(actual.values))
            found += [f"{name}.{value}: enum value missing" for value in missing]
        elif isinstance(expected, GraphQLUnionType):
            assert isinstance(actual, GraphQLUnionType)
            members = {t.name for t in actual.types}
            found += [f"{name}: {t.name} missing" for t in expected.types if t.name not in members]
        elif isinstance(expected, GraphQLObjectType | GraphQLInterfaceType):
            assert isinstance(actual, GraphQLObjectType | GraphQLInterfaceType)
            if only_field is not None:
                names = {only_field}
            elif name in contract.contract.type_map:
                names = set(_fields(contract.contract.type_map[name]))
            else:
                names = set(expected.fields)
            implemented = {i.name for i in actual.interfaces}
            found += [
                f"{name}: no longer implements {i.name}"
                for i in expected.interfaces
                if i.name not in implemented
            ]
            for field_name in sorted(names):
                found += _output_field(name, field_name, expected, actual)
        elif isinstance(expected, GraphQLInputObjectType):
            assert isinstance(actual, GraphQLInputObjectType)
            found += _inputs(name, expected.fields, actual.fields)
    return found


def _output_field(
    type_name: str,
    field_name: str,
    expected: GraphQLObjectType | GraphQLInterfaceType,
    actual: GraphQLObjectType | GraphQLInterfaceType,
) -> list[str]:
    coordinate = f"{type_name}.{field_name}"
    field = actual.fields.get(field_name)
    if field is None:
        return [f"{coordinate}: field missing"]
    want = expected.fields[field_name]
    found = []
    if str(field.type) != str(want.type):
        found.append(f"{coordinate}: is {field.type}, the contract says {want.type}")
    return found + _inputs(coordinate, want.args, field.args)


def _inputs(
    owner: str,
    expected: dict[str, GraphQLArgument] | dict[str, GraphQLInputField],
    actual: dict[str, GraphQLArgument] | dict[str, GraphQLInputField],
) -> list[str]:
    """Arguments of a field, or fields of an input type: the same type (nullability included)
    and the same default; where the contract gives no default, `null` is the same thing for a
    nullable one. Additions must be optional, or existing operations would stop validating."""
    found = []
    for name, want in expected.items():
        coordinate = f"{owner}({name}:)" if "." in owner else f"{owner}.{name}"
        got = actual.get(name)
        if got is None:
            found.append(f"{coordinate}: missing")
            continue
        if str(got.type) != str(want.type):
            found.append(f"{coordinate}: is {got.type}, the contract says {want.type}")
        want_default, got_default = _default(want), _default(got)
        if want_default != got_default and not (want_default is None and got_default == "null"):
            found.append(
                f"{coordinate}: default is {got_default or 'none'}, "
                f"the contract says {want_default or 'none'}"
            )
    for name, got in actual.items():
        if name not in expected and is_non_null_type(got.type) and _default(got) is None:
            coordinate = f"{owner}({name}:)" if "." in owner else f"{owner}.{name}"
            found.append(f"{coordinate}: added as required ({got.type})")
    return found


@pytest.mark.parametrize("source", ["sdl", "introspection"])
async def test_the_live_schema_keeps_the_contract(contract, source):
    live = sdl_schema() if source == "sdl" else await introspected_schema()
    assert differences(contract, live) == []
    # graphql-core's own view, contract -> live: nothing an existing client relies on breaks.
    assert [change.description for change in find_breaking_changes(contract.contract, live)] == []


def test_every_served_addition_names_something_in_the_additions(contract):
    for coordinate in SERVED_ADDITIONS:
        name, _, field = coordinate.partition(".")
        named = contract.combined.type_map.get(name)
        assert named is not None, f"{coordinate}: not in contract-additions.graphql"
        assert not field or field in _fields(named), f"{coordinate}: not in the additions"
        assert coordinate not in contract.contract.type_map, f"{coordinate} is in the contract"


def test_the_comparison_sees_a_drift(contract):
    """The checker itself: a schema with `first: Int!` (the defect once served) and a field
    made nullable is told apart from the contract, by coordinate."""
    text = (design_dir() / "contract.graphql").read_text()
    drifted = build_schema(
        text.replace("generations(first: Int = 20,", "generations(first: Int! = 20,").replace(
            "  email: String!\n", "  email: String\n", 1
        )
    )
    assert sorted(differences(contract, drifted)) == [
        "Query.generations(first:): is Int!, the contract says Int",
        "User.email: is String, the contract says String!",
    ]


PAGES = """{
  generations(first: null) { pageInfo { hasNextPage } }
  creditTransactions(first: null) { edges { node { kind } } }
  apiCallLogs(first: null, failedOnly: null) { pageInfo { hasNextPage } }
  errorEvents(first: null) { pageInfo { hasNextPage } }
  notifications(first: null) { pageInfo { hasNextPage } }
}"""


async def test_null_means_the_default(backend, make_user):
    admin = await make_user(role=Role.ADMIN)
    context = request_context(backend.settings, auth.issue_token(admin, backend.settings))
    result = await build_kiln_schema().execute(PAGES, context_value=context)
    assert result.errors is None, result.errors
    assert result.data is not None
    assert len(result.data["creditTransactions"]["edges"]) == 1  # the signup grant


def test_a_missing_design_folder_fails_the_run_instead_of_skipping(monkeypatch, tmp_path):
    import tests.schema.test_contract as this

    monkeypatch.setattr(this, "ROOT", tmp_path / "checkout" / "kiln")
    with pytest.raises(pytest.fail.Exception, match=r"contract\.graphql not found"):
        design_dir()
