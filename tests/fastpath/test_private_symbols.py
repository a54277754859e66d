"""Every Strawberry and graphql-core internal the fast path uses is still there, and the list
of them (fastpath/internals.py, SYMBOLS) is complete: an upgrade that removes or reshapes one
fails here, naming it, rather than somewhere in a response; a module of the package that
reaches an internal without listing it fails here too."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import strawberry
from graphql import GraphQLField, GraphQLSchema
from strawberry.schema.schema import Schema
from strawberry.types import Info

import fastpath
from fastpath import internals
from fastpath.internals import FIELD_DEFINITION, SYMBOLS, Private

PACKAGE = Path(fastpath.__file__).parent
# What the package may import from Strawberry and graphql-core without going through
# internals.py: their documented entry points.
PUBLIC_MODULES = {
    "graphql",
    "graphql.pyutils",
    "strawberry",
    "strawberry.extensions",
    "strawberry.types",
    "strawberry.types.graphql",
}
LISTED_NAMES = {symbol.name for symbol in SYMBOLS}


class Colour(Enum):
    RED = "red"


_infos: list[Info] = []


@strawberry.type
class Query:
    @strawberry.field
    def colour(self, info: Info) -> Colour:
        _infos.append(info)
        return Colour.RED


def samples() -> dict[type, Any]:
    """An instance of each class whose instances carry a listed attribute, made by the
    libraries themselves."""
    schema = strawberry.Schema(Query)
    _infos.clear()
    result = schema.execute_sync("{ colour }")
    assert result.errors is None, result.errors
    info = _infos.pop()
    core: GraphQLSchema = schema._schema
    field: GraphQLField = core.query_type.fields["colour"]  # type: ignore[union-attr]
    definition = field.extensions[FIELD_DEFINITION]
    made: list[Any] = [schema, core, info, definition, definition.base_resolver]
    made.append(core.get_type("Colour"))
    return {type(sample): sample for sample in made}


def _owner(symbol: Private) -> Any:
    module_name, _, qualname = symbol.owner.partition(":")
    owner: Any = importlib.import_module(module_name)
    for part in filter(None, qualname.split(".")):
        owner = getattr(owner, part)
    return owner


@pytest.mark.parametrize("symbol", SYMBOLS, ids=str)
def test_every_private_symbol_is_still_there(symbol: Private) -> None:
    try:
        owner = _owner(symbol)
    except (ImportError, AttributeError) as error:
        pytest.fail(f"{symbol}: its owner {symbol.owner} is gone ({error}); {symbol.why}")
    if symbol.on_instance:
        made = samples()
        instance = next((s for t, s in made.items() if issubclass(t, owner)), None)
        assert instance is not None, f"{symbol}: no sample instance of {owner}"
        present = hasattr(instance, symbol.name)
    else:
        present = hasattr(owner, symbol.name)
    assert present, f"{symbol} is gone: the fast path uses it ({symbol.why or 'see internals'})"
    if symbol.parameters:
        parameters = list(inspect.signature(getattr(owner, symbol.name)).parameters)[1:]
        assert parameters == list(symbol.parameters), (
            f"{symbol} now takes {parameters}; the fast path overrides it with "
            f"{list(symbol.parameters)}"
        )


def test_strawberry_still_keeps_a_fields_definition_where_the_fast_path_reads_it() -> None:
    made = samples()
    core = next(s for s in made.values() if isinstance(s, GraphQLSchema))
    field = core.query_type.fields["colour"]  # type: ignore[union-attr]
    assert FIELD_DEFINITION in (field.extensions or {}), (
        f"GraphQLField.extensions[{FIELD_DEFINITION!r}] is gone: the fast path reads a "
        "field's Strawberry definition there"
    )


def test_the_samples_are_what_the_fast_path_is_given() -> None:
    made = samples()
    assert any(isinstance(s, Schema) for s in made.values())
    info = next(s for s in made.values() if isinstance(s, Info))
    raw = internals.raw_info(info)
    # What fastpath/projection.py reads of graphql-core's info.
    used = ("field_nodes", "return_type", "path", "schema", "fragments", "operation", "context")
    for field in (*used, "variable_values"):
        assert hasattr(raw, field), f"graphql-core's info behind Info._raw_info has no {field}"


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (info.name, ast.parse((PACKAGE / f"{info.name}.py").read_text()))
        for info in pkgutil.iter_modules([str(PACKAGE)])
    ] + [("__init__", ast.parse((PACKAGE / "__init__.py").read_text()))]


def _library(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in ("graphql", "strawberry")


def test_internals_lists_everything_it_imports() -> None:
    """Whatever internals.py imports from a library module that is not public is listed."""
    tree = ast.parse((PACKAGE / "internals.py").read_text())
    listed = {(s.owner, s.name) for s in SYMBOLS}
    missing = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and _library(node.module)
        if node.module not in PUBLIC_MODULES
        for alias in node.names
        if (node.module, alias.name) not in listed
    ]
    assert not missing, f"imported by fastpath/internals.py but not in SYMBOLS: {missing}"


def test_no_other_module_of_the_package_reaches_an_internal_unlisted() -> None:
    """The other modules import libraries' public modules only (internals through
    internals.py), and name no private attribute of another object that is not listed."""
    found: list[str] = []
    for name, tree in _modules():
        if name == "internals":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and _library(node.module):
                if node.module not in PUBLIC_MODULES:
                    found.append(f"fastpath/{name}.py imports from {node.module}")
            elif isinstance(node, ast.Import):
                found += [
                    f"fastpath/{name}.py imports {a.name}"
                    for a in node.names
                    if _library(a.name) and a.name not in PUBLIC_MODULES
                ]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                if not own and node.attr not in LISTED_NAMES:
                    found.append(f"fastpath/{name}.py uses .{node.attr}")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and _private(node.args[1].value)
            ):
                found.append(f"fastpath/{name}.py uses {node.func.id}(..., {node.args[1].value!r})")
    assert not found, f"internals used outside fastpath/internals.py or unlisted: {found}"


def test_every_private_method_the_package_overrides_is_listed() -> None:
    found: list[str] = []
    for info in pkgutil.iter_modules([str(PACKAGE)]):
        module = importlib.import_module(f"fastpath.{info.name}")
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != module.__name__:
                continue
            for attribute in vars(cls):
                overridden = any(
                    attribute in vars(base) and _library(base.__module__) for base in cls.__mro__
                )
                if _private(attribute) and overridden and attribute not in LISTED_NAMES:
                    found.append(f"{cls.__qualname__}.{attribute}")
    assert not found, f"private methods of Strawberry or graphql-core overridden unlisted: {found}"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_graphql_core_takes_the_executor_by_the_keyword_the_fast_path_passes() -> None:
    """fastpath.execution.executor_kwargs names graphql-core 3.3's `executor_class` keyword
    itself rather than through Strawberry's private helper for it."""
    import graphql

    for function in (graphql.execute, graphql.subscribe):
        assert "executor_class" in inspect.signature(function).parameters, function.__name__
