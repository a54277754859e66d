"""Every Strawberry and graphql-core internal the fast path relies on, and the only module of
the package that reaches them.

The fast path stands in for parts of Strawberry and graphql-core (fastpath/__init__.py), so
it depends on what they do not promise to keep: private attributes, internal modules, a
method the WebSocket handler overrides. `SYMBOLS` lists each of them; the other modules of
the package take them from here (imports below, accessor functions for attributes), and
tests/fastpath/test_private_symbols.py fails, naming the symbol, when an upgrade removes one,
and when a module of the package uses an internal this list does not name. pyproject.toml
pins both libraries to a minor version: an upgrade is a decision, made with that test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo, GraphQLSchema
from graphql.execution.values import VariableValues, get_directive_values
from graphql.type.scalars import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    serialize_boolean,
    serialize_float,
    serialize_id,
    serialize_int,
    serialize_string,
)
from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import CustomGraphQLEnumType
from strawberry.schema.types.base_scalars import isoformat as strawberry_isoformat
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.types.execution import PreExecutionError
from strawberry.utils.operation import get_operation_type


@dataclass(frozen=True, slots=True)
class Private:
    """`name` in `owner` ("module" or "module:Class"): what the fast path uses there.
    `on_instance`: an attribute the owner's instances get when made (not on the class).
    `parameters`: for a method the fast path overrides, the parameters its override takes."""

    owner: str
    name: str
    on_instance: bool = False
    why: str = ""
    parameters: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}"


_WS = "strawberry.subscriptions.protocols.graphql_transport_ws.handlers"

SYMBOLS: tuple[Private, ...] = (
    # graphql-core
    Private("graphql.execution.values", "VariableValues", why="coerced @skip/@include values"),
    Private("graphql.execution.values", "get_directive_values", why="@skip/@include"),
    Private("graphql.type.scalars", "GRAPHQL_MAX_INT", why="Int without serialize()"),
    Private("graphql.type.scalars", "GRAPHQL_MIN_INT", why="Int without serialize()"),
    Private("graphql.type.scalars", "serialize_boolean", why="leaves without serialize()"),
    Private("graphql.type.scalars", "serialize_float", why="leaves without serialize()"),
    Private("graphql.type.scalars", "serialize_id", why="leaves without serialize()"),
    Private("graphql.type.scalars", "serialize_int", why="leaves without serialize()"),
    Private("graphql.type.scalars", "serialize_string", why="leaves without serialize()"),
    Private(
        "graphql.execution.executor:Executor",
        "complete_value",
        why="overridden for root fields (fastpath/execution.py)",
        parameters=(
            "return_type",
            "field_details_list",
            "info",
            "path",
            "result",
            "position_context",
        ),
    ),
    # Strawberry
    Private("strawberry.execution", "optimized_is_awaitable", why="as Strawberry executes"),
    Private("strawberry.schema.schema", "StrawberryGraphQLCoreExecutionContext"),
    Private("strawberry.schema.schema_converter", "CustomGraphQLEnumType"),
    Private("strawberry.schema.schema_converter:CustomGraphQLEnumType", "wrapped_cls", True),
    Private("strawberry.schema.types.base_scalars", "isoformat", why="DateTime leaves"),
    Private(_WS, "BaseGraphQLTransportWSHandler"),
    Private(_WS, "Operation"),
    Private(
        f"{_WS}:BaseGraphQLTransportWSHandler",
        "_send_result_stream",
        why="overridden: a subscription handed off is delivered after its stream",
        parameters=("operation", "result_source"),
    ),
    Private("strawberry.types.execution", "PreExecutionError"),
    Private("strawberry.utils.operation", "get_operation_type"),
    Private("strawberry.schema.schema:Schema", "_schema", True, why="graphql-core's schema"),
    Private("strawberry.schema.schema:Schema", "_process_errors", why="errors as Strawberry"),
    Private("graphql:GraphQLSchema", "_strawberry_schema", True, why="the schema's extensions"),
    Private("strawberry.types.info:Info", "_raw_info", True, why="graphql-core's info"),
    Private("strawberry.extensions:SchemaExtension", "_implements_resolve"),
    Private("strawberry.types.field:StrawberryField", "base_resolver", True),
    Private("strawberry.types.field:StrawberryField", "default_resolver", True),
    Private("strawberry.types.field:StrawberryField", "get_result"),
    Private("strawberry.types.field:StrawberryField", "python_name", True),
    Private("strawberry.types.fields.resolver:StrawberryResolver", "info_parameter"),
    Private("strawberry.types.fields.resolver:StrawberryResolver", "root_parameter"),
    Private("strawberry.types.fields.resolver:StrawberryResolver", "parent_parameter"),
    Private("strawberry.types.fields.resolver:StrawberryResolver", "self_parameter"),
    Private("strawberry.types.fields.resolver:StrawberryResolver", "is_async"),
)

# Where Strawberry keeps a GraphQL field's definition (GraphQLField.extensions).
FIELD_DEFINITION = "strawberry-definition"


def raw_info(info: Any) -> GraphQLResolveInfo | None:
    """graphql-core's info behind a Strawberry Info."""
    return getattr(info, "_raw_info", None)


def graphql_schema(schema: Any) -> GraphQLSchema:
    """graphql-core's schema behind a Strawberry schema."""
    return schema._schema


def strawberry_schema(schema: GraphQLSchema) -> Any:
    """The Strawberry schema a graphql-core schema was built by (None for another)."""
    return getattr(schema, "_strawberry_schema", None)


def process_errors(schema: Any, errors: list[GraphQLError], execution: Any) -> None:
    """Strawberry's processing of an operation's errors (logging, suggestions removed)."""
    schema._process_errors(errors, execution)


def implements_resolve(extension_class: type) -> bool:
    """Whether a schema extension class hooks the resolution of every field."""
    implements = getattr(extension_class, "_implements_resolve", None)
    return implements is not None and bool(implements())


__all__ = [
    "FIELD_DEFINITION",
    "GRAPHQL_MAX_INT",
    "GRAPHQL_MIN_INT",
    "SYMBOLS",
    "BaseGraphQLTransportWSHandler",
    "CustomGraphQLEnumType",
    "Operation",
    "PreExecutionError",
    "Private",
    "StrawberryGraphQLCoreExecutionContext",
    "VariableValues",
    "get_directive_values",
    "get_operation_type",
    "graphql_schema",
    "implements_resolve",
    "optimized_is_awaitable",
    "process_errors",
    "raw_info",
    "serialize_boolean",
    "serialize_float",
    "serialize_id",
    "serialize_int",
    "serialize_string",
    "strawberry_isoformat",
    "strawberry_schema",
]
