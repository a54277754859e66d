"""Selections completed without graphql-core's per-field machinery.

graphql-core completes every field of a result through a resolve-info object, a middleware
call, awaitable checks and path bookkeeping. For a subscription it does so again for every
event (with one event per subscriber, most of the API's CPU per delivered message), and for a
page of 20 generations with outputs it is ~40% of the request's CPU (bench/RESULTS.md: fan-out,
read). Subscriptions handed off to the transport use a projection per event
(fastpath/websocket.py, resolvers/subscriptions.py); queries and mutations use one to complete
the value of each root field (fastpath/execution.py).

A `Projection` is compiled once per (document, field, variables used by directives) from its
selection set (aliases, fragments, `__typename`, `@skip`/`@include`, nested objects and
lists) and computes the same `data` straight from the event: plain fields are read as
Strawberry reads them, resolvers without arguments are called as Strawberry calls them, and
leaves are serialised by the schema's own scalar and enum types. The payload is encoded once
per (event, selection) with orjson and shared by every local subscriber of that channel with
the same selection.

Anything it cannot reproduce exactly is left to graphql-core: `compile_projection` returns
None for field arguments, other directives, abstract types, fields with permission classes or
extensions, and schemas whose extensions hook field resolution beyond the root field; a
resolver raising, a null where the schema says non-null or a value orjson cannot encode raises
`Unsupported` from `payload` or `completion`, and the caller completes that value the normal way
(so errors keep their extensions.code and path). List items that may wait are all started
before any of them waits, so DataLoader loads from sibling items are still batched into one
query, but run in the caller's task (`start`): only those that really wait are awaited, and
a value nothing waits for (a page read with its outputs) completes without any task or
future. Leaves are serialised through fast paths that give what the type's `serialize`
gives (`_scalar`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date, datetime, time
from math import isfinite
from typing import Any, Generic, Literal, TypeVar, cast

import orjson
from graphql import (
    BREAK,
    DirectiveNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLIncludeDirective,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    Visitor,
    is_abstract_type,
    is_leaf_type,
    visit,
)
from graphql.pyutils import Undefined

from fastpath.internals import (
    FIELD_DEFINITION,
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    CustomGraphQLEnumType,
    VariableValues,
    get_directive_values,
    implements_resolve,
    raw_info,
    serialize_boolean,
    serialize_float,
    serialize_id,
    serialize_int,
    serialize_string,
    strawberry_isoformat,
    strawberry_schema,
)

# Sends one `next` message whose payload is already encoded (JSON bytes of {"data": ...}).
DirectSend = Callable[[bytes], Awaitable[None]]

T = TypeVar("T")
_PROJECTIONS = 512  # compiled selections kept (one per distinct document and variables)
_PAYLOADS = 2048  # encoded payloads kept (one per recent event and selection)


class Unsupported(Exception):
    """This event cannot be projected exactly; execute it the normal way."""


class _LiteInfo:
    """What a resolver called by a projection sees as `info`: the context only. A resolver
    that needs more raises AttributeError, and the event goes the normal way."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context


@dataclass(frozen=True)
class _Field:
    key: str  # the response key (alias or name)
    typename: str | None = None  # set for __typename
    definition: Any = None  # the StrawberryField
    pass_self: bool = False
    info_name: str | None = None
    source_names: tuple[str, ...] = ()  # root / parent parameters given the source
    is_async: bool = False
    basic: bool = True
    output: Any = None  # the GraphQL output type (wrapped)
    children: tuple[_Field, ...] | None = None  # for object types
    # An async resolver below this field: its value may have to wait (a Later), all list
    # items are started before any is waited for (DataLoader loads of siblings share a batch).
    children_suspend: bool = False
    # Fast paths, set for most fields of a page: the attribute a field without a resolver
    # reads, and for a leaf (or non-null leaf) the serialiser of its non-null value.
    attr: str = ""
    scalar: Callable[[Any], Any] | None = None
    non_null: bool = False
    suspends: bool = dataclass_field(init=False)
    plain: bool = dataclass_field(init=False)  # an attribute serialised as a leaf

    def __post_init__(self) -> None:
        object.__setattr__(self, "suspends", self.is_async or self.children_suspend)
        object.__setattr__(self, "plain", bool(self.attr) and self.scalar is not None)

    @property
    def reads_context(self) -> bool:
        return self.info_name is not None or any(c.reads_context for c in self.children or ())


class Projection:
    """The compiled selection of one field (a subscription's, or a query or mutation root
    field). `nodes` are kept so the cache keys built from their ids stay valid while the
    projection lives."""

    def __init__(
        self,
        root: _Field,
        nodes: tuple[FieldNode, ...],
        uses_variables: bool,
    ) -> None:
        assert root.children is not None
        self.root = root
        self.fields = root.children
        self.nodes = nodes
        self.uses_variables = uses_variables  # @skip/@include read variables: key on them
        self.prefix = b'{"data":{' + orjson.dumps(root.key) + b":"
        # A resolver given `info` may read anything in the context (the caller, the address
        # output URLs are built on): such payloads are shared only within one connection.
        self.per_context = root.reads_context

    async def data(self, value: Any, context: Any) -> dict[str, Any]:
        data = _complete_object(self.fields, value, context)
        return await data if isinstance(data, Later) else data

    def completion(self, value: Any, context: Any) -> Any:
        """The completed value of the root field itself (its non-null and list wrappers
        included) for the resolved `value`, or a `Later` to await when something below
        waits."""
        return _complete(self.root, self.root.output, value, context)

    async def payload(self, message: Any, value: Callable[[Any], Any], context: Any) -> bytes:
        """The encoded payload (`{"data": {...}}`) for `message`, a published event shared by
        the subscribers of its channel: computed from `value(message)` on first use, then reused.
        The cache holds what its key's ids point at, so an id is never reused while cached."""
        owner = context if self.per_context else None
        key = (id(message), id(self), id(owner))
        cached = _payloads.get(key)
        if cached is not None and cached[0] is message and cached[1] is self and cached[2] is owner:
            _payloads.move_to_end(key)
            return cached[3]
        data = await self.data(value(message), context)
        try:
            encoded = self.prefix + orjson.dumps(data) + b"}}"
        except TypeError as error:  # e.g. an integer beyond 64 bits
            raise Unsupported(str(error)) from error
        _payloads[key] = (message, self, owner, encoded)
        if len(_payloads) > _PAYLOADS:
            _payloads.popitem(last=False)
        return encoded


_MISSING: Any = object()
_projections: OrderedDict[tuple[Any, ...], Projection | None] = OrderedDict()
_payloads: OrderedDict[tuple[int, int, int], tuple[object, Projection, Any, bytes]] = OrderedDict()


def compile_projection(info: Any) -> Projection | None:
    """The projection of the field `info` resolves (a Strawberry Info), or None when the
    selection needs graphql-core."""
    raw = raw_info(info)
    return None if raw is None else projection_of(raw)


def projection_of(raw: GraphQLResolveInfo) -> Projection | None:
    """The projection of the field `raw` resolves (graphql-core's info), or None."""
    nodes_key = (*map(id, raw.field_nodes), id(raw.schema))
    known = _projections.get(nodes_key, _MISSING)
    if known is _MISSING or (known is not None and known.uses_variables):
        try:
            variables = orjson.dumps(_variables(raw).coerced, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None
        key: tuple[Any, ...] = (*nodes_key, variables)
        if key in _projections:
            _projections.move_to_end(key)
            return _projections[key]
        projection = _compile(raw)
        # Keyed on the nodes alone when no directive reads a variable, so requests that
        # differ only in their inputs (every createGeneration) share one projection.
        if projection is None or not projection.uses_variables:
            key = nodes_key
        _projections[key] = projection
        if len(_projections) > _PROJECTIONS:
            _projections.popitem(last=False)
        return projection
    _projections.move_to_end(nodes_key)
    return known


def _variables(raw: GraphQLResolveInfo) -> VariableValues:
    """graphql-core gives a subscription's source resolver the coerced values as a plain dict
    (other resolvers get VariableValues)."""
    given: Any = raw.variable_values
    return given if isinstance(given, VariableValues) else VariableValues({}, dict(given or {}))


def _compile(raw: GraphQLResolveInfo) -> Projection | None:
    if not _only_root_middleware(raw.schema):
        return None
    object_type = _object_type(raw.return_type)
    if object_type is None:
        return None
    try:
        fields = _compile_selection(
            raw.schema, raw.fragments, _variables(raw), object_type, raw.field_nodes
        )
    except Unsupported:
        return None
    root = _Field(
        key=str(raw.path.key),
        output=raw.return_type,
        children=fields,
        children_suspend=any(f.suspends for f in fields),
    )
    uses_variables = _directives_read_variables(raw.field_nodes) or _fragments_read_variables(
        raw.operation, raw.fragments
    )
    return Projection(root, tuple(raw.field_nodes), uses_variables)


class _DirectiveVariables(Visitor):
    found = False

    def enter_directive(self, node: DirectiveNode, *_: Any) -> Any:
        if any(isinstance(argument.value, VariableNode) for argument in node.arguments or ()):
            self.found = True
            return BREAK
        return None


def _directives_read_variables(nodes: Iterable[Any]) -> bool:
    """Whether a directive in these nodes (and below them) reads a variable (then what the
    selection includes depends on the variables' values)."""
    finder = _DirectiveVariables()
    for node in nodes:
        visit(node, finder)
        if finder.found:
            return True
    return False


def _fragments_read_variables(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
) -> bool:
    """`_directives_read_variables` of every fragment of the operation's document, found once
    per document rather than once per root field: thirty aliased root fields would each walk
    all the fragments again."""
    known = _fragment_variables.get(id(operation))
    if known is not None and known[0] is operation:
        _fragment_variables.move_to_end(id(operation))
        return known[1]
    found = _directives_read_variables(fragments.values())
    # The entry holds the operation, so its id is not reused while it is kept.
    _fragment_variables[id(operation)] = (operation, found)
    if len(_fragment_variables) > _PROJECTIONS:
        _fragment_variables.popitem(last=False)
    return found


_fragment_variables: OrderedDict[int, tuple[OperationDefinitionNode, bool]] = OrderedDict()


# Schema extensions whose `resolve` hook acts on root fields only (so it already ran for the
# subscription field itself) and may be skipped for the fields of its events. Kiln's schema has
# no `resolve` hook at all today (InputLimits checks inputs in on_execute).
ROOT_ONLY_RESOLVE_HOOKS: tuple[type, ...] = ()


def _only_root_middleware(schema: GraphQLSchema) -> bool:
    """A projection skips the `resolve` hooks of schema extensions, so any extension with one,
    other than those known to act on root fields only, sends every event to graphql-core."""
    owner = strawberry_schema(schema)
    if owner is None:
        return False
    for extension in owner.extensions:
        cls = getattr(extension, "func", extension)
        if not isinstance(cls, type):
            cls = type(cls)
        if implements_resolve(cls) and cls not in ROOT_ONLY_RESOLVE_HOOKS:
            return False
    return True


def _object_type(output: Any) -> GraphQLObjectType | None:
    while isinstance(output, GraphQLNonNull | GraphQLList):
        output = output.of_type
    return output if isinstance(output, GraphQLObjectType) else None


def _included(node: Any, variables: VariableValues) -> bool:
    if not node.directives:
        return True
    for directive in node.directives:
        if directive.name.value not in ("skip", "include"):
            raise Unsupported(f"directive @{directive.name.value}")
    skip = get_directive_values(GraphQLSkipDirective, node, variables)
    if skip and skip.get("if") is True:
        return False
    include = get_directive_values(GraphQLIncludeDirective, node, variables)
    return not (include and include.get("if") is False)


def _applies(schema: GraphQLSchema, condition: Any, object_type: GraphQLObjectType) -> bool:
    if condition is None:
        return True
    named = schema.get_type(condition.name.value)
    if named is object_type:
        return True
    if named is not None and is_abstract_type(named):
        return schema.is_sub_type(named, object_type)
    return False


def _collect(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDefinitionNode],
    variables: VariableValues,
    object_type: GraphQLObjectType,
    selection_set: SelectionSetNode,
    into: dict[str, list[FieldNode]],
    visited: set[str],
) -> None:
    """graphql-core's field collection, for one concrete type, in the same order."""
    for selection in selection_set.selections:
        if not _included(selection, variables):
            continue
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            into.setdefault(key, []).append(selection)
        elif isinstance(selection, InlineFragmentNode):
            if _applies(schema, selection.type_condition, object_type):
                _collect(
                    schema, fragments, variables, object_type, selection.selection_set, into,
                    visited,
                )  # fmt: skip
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if getattr(selection, "arguments", None) or getattr(
                fragment, "variable_definitions", None
            ):
                raise Unsupported(f"fragment variables on {name}")  # experimental in graphql-core
            if name in visited or fragment is None:
                continue
            visited.add(name)
            if _applies(schema, fragment.type_condition, object_type):
                _collect(
                    schema, fragments, variables, object_type, fragment.selection_set, into,
                    visited,
                )  # fmt: skip


def _compile_selection(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDefinitionNode],
    variables: VariableValues,
    object_type: GraphQLObjectType,
    nodes: list[FieldNode] | tuple[FieldNode, ...],
) -> tuple[_Field, ...]:
    grouped: dict[str, list[FieldNode]] = {}
    visited: set[str] = set()
    for node in nodes:
        if node.selection_set is not None:
            _collect(
                schema, fragments, variables, object_type, node.selection_set, grouped, visited
            )
    fields = []
    for key, group in grouped.items():
        name = group[0].name.value
        if name == "__typename":
            fields.append(_Field(key, typename=object_type.name))
            continue
        graphql_field = object_type.fields.get(name)
        if graphql_field is None or any(node.arguments for node in group):
            raise Unsupported(name)
        definition = (graphql_field.extensions or {}).get(FIELD_DEFINITION)
        if definition is None or definition.extensions or definition.arguments:
            raise Unsupported(name)
        resolver = definition.base_resolver
        info = resolver.info_parameter if resolver else None
        sources = tuple(
            p.name for p in (resolver.root_parameter, resolver.parent_parameter) if p
        ) if resolver else ()  # fmt: skip
        output = graphql_field.type
        children = None
        named = output
        while isinstance(named, GraphQLNonNull | GraphQLList):
            named = named.of_type
        if isinstance(named, GraphQLObjectType):
            children = _compile_selection(schema, fragments, variables, named, group)
        elif not is_leaf_type(named):
            raise Unsupported(name)  # unions and interfaces need resolve_type
        leaf = output.of_type if isinstance(output, GraphQLNonNull) else output
        fields.append(
            _Field(
                key=key,
                typename=None,
                definition=definition,
                pass_self=bool(resolver and resolver.self_parameter),
                info_name=info.name if info else None,
                source_names=sources,
                is_async=bool(resolver and resolver.is_async),
                basic=resolver is None,
                output=output,
                children=children,
                children_suspend=any(c.suspends for c in children or ()),
                attr=definition.python_name
                if resolver is None and definition.default_resolver is getattr
                else "",
                scalar=_scalar(key, leaf) if is_leaf_type(leaf) else None,
                non_null=isinstance(output, GraphQLNonNull),
            )
        )
    return tuple(fields)


def _scalar(key: str, output: Any) -> Callable[[Any], Any]:
    """The serialiser of a leaf type's non-null values: the type's own `serialize`, with the
    values it returns unchanged (a str for String and ID, a 32-bit int for Int, a finite
    float for Float, a bool for Boolean, an enum member's name) returned without the call."""
    serialize = output.serialize

    def general(value: Any) -> Any:
        try:
            serialized = serialize(value)
        except Exception as error:
            raise Unsupported(f"{key}: {error!r}") from error
        if serialized is Undefined or serialized is None:
            raise Unsupported(f"{key}: not serialisable")
        return serialized

    function = getattr(serialize, "__func__", serialize)
    if function in (serialize_string, serialize_id):
        return lambda value: value if isinstance(value, str) else general(value)
    if function is serialize_int:
        return lambda value: (
            value
            if type(value) is int and GRAPHQL_MIN_INT <= value <= GRAPHQL_MAX_INT
            else general(value)
        )
    if function is serialize_float:
        return lambda value: value if type(value) is float and isfinite(value) else general(value)
    if function is serialize_boolean:
        return lambda value: value if type(value) is bool else general(value)
    if function is strawberry_isoformat:  # DateTime, Date, Time
        return lambda value: (
            value.isoformat() if type(value) in (datetime, date, time) else general(value)
        )
    if function is CustomGraphQLEnumType.serialize:
        # Strawberry's enum serialises a member to the name whose value equals the member's.
        enum = output.wrapped_cls
        names: dict[Any, str] = {}
        for name, value in output.values.items():  # the first name found, as Strawberry's
            for member in enum:
                if member.value == value.value:
                    names.setdefault(member, name)
        return lambda value: (names.get(value) if type(value) is enum else None) or general(value)
    return general


def _call(field: _Field, source: Any, context: Any) -> Any:
    """What the field's resolver returns (an awaitable for async resolvers)."""
    if field.attr:  # what get_result does for a field without a resolver
        return getattr(source, field.attr)
    definition = field.definition
    if field.basic:
        return definition.get_result(source, info=None, args=[], kwargs={})
    args = [source] if field.pass_self else []
    kwargs: dict[str, Any] = dict.fromkeys(field.source_names, source)
    if field.info_name:
        kwargs[field.info_name] = _LiteInfo(context)
    return definition.base_resolver(*args, **kwargs)


def _resolve_now(field: _Field, source: Any, context: Any) -> Any:
    """A field without an async resolver: no coroutine per field (most of a page's fields)."""
    try:
        result = _call(field, source, context)
    except Exception as error:
        raise Unsupported(f"{field.key}: {error!r}") from error
    if not field.basic and inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise Unsupported(f"{field.key}: a plain resolver returned an awaitable")
    return result


class Later:
    """A completion that waits on something (a DataLoader load): awaiting it finishes it.
    Completions return their value when nothing below them waits (a page read with its
    outputs), so most of a page is completed without a coroutine per object or field."""

    __slots__ = ("_awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._awaitable.__await__()


def _resolve(field: _Field, source: Any, context: Any) -> Any:
    """An async resolver's value, or a Later when it waits (run up to its first wait)."""
    try:
        result = _call(field, source, context)
        if not inspect.iscoroutine(result):
            return Later(_resolved(field, result))
        done, value = start(result)
    except Exception as error:
        raise Unsupported(f"{field.key}: {error!r}") from error
    return value if done else Later(_resolved(field, value))


async def _resolved(field: _Field, awaitable: Awaitable[Any]) -> Any:
    try:
        return await awaitable
    except Exception as error:
        raise Unsupported(f"{field.key}: {error!r}") from error


def _complete_object(fields: tuple[_Field, ...], source: Any, context: Any) -> Any:
    """The object's data, or a Later when a field waits (the fields after it are completed
    once it is done, in order, as graphql-core completes them)."""
    data: dict[str, Any] = {}
    for index, field in enumerate(fields):
        if field.plain:  # most fields: _field_now's first case, without the call
            try:
                value = getattr(source, field.attr)
            except Exception as error:
                raise Unsupported(f"{field.key}: {error!r}") from error
            if value is not None:
                data[field.key] = field.scalar(value)  # type: ignore[misc]
            elif field.non_null:
                raise Unsupported(f"{field.key}: null for a non-null field")
            else:
                data[field.key] = None
        elif field.suspends:
            value = _suspending_field(field, source, context)
            if isinstance(value, Later):
                return Later(_rest_of_object(fields, index, value, data, source, context))
            data[field.key] = value
        else:
            data[field.key] = _field_now(field, source, context)
    return data


async def _rest_of_object(
    fields: tuple[_Field, ...],
    index: int,
    waiting: Later,
    data: dict[str, Any],
    source: Any,
    context: Any,
) -> dict[str, Any]:
    data[fields[index].key] = await waiting
    for field in fields[index + 1 :]:
        if field.suspends:
            value = _suspending_field(field, source, context)
            data[field.key] = await value if isinstance(value, Later) else value
        else:
            data[field.key] = _field_now(field, source, context)
    return data


def _suspending_field(field: _Field, source: Any, context: Any) -> Any:
    """The completed value of a field that may wait (or has fields below that may)."""
    if field.is_async:
        value = _resolve(field, source, context)
        if isinstance(value, Later):
            return Later(_complete_later(field, value, context))
    else:
        value = _resolve_now(field, source, context)
    return _complete(field, field.output, value, context)


async def _complete_later(field: _Field, resolving: Later, context: Any) -> Any:
    completed = _complete(field, field.output, await resolving, context)
    return await completed if isinstance(completed, Later) else completed


def _field_now(field: _Field, source: Any, context: Any) -> Any:
    """The completed value of a field that never waits."""
    if field.typename is not None:
        return field.typename
    if field.attr:
        try:
            value = getattr(source, field.attr)
        except Exception as error:
            raise Unsupported(f"{field.key}: {error!r}") from error
    else:
        value = _resolve_now(field, source, context)
    scalar = field.scalar
    if scalar is None:
        return _complete_now(field, field.output, value, context)
    if value is None:
        if field.non_null:
            raise Unsupported(f"{field.key}: null for a non-null field")
        return None
    return scalar(value)


def _complete(field: _Field, output: Any, value: Any, context: Any) -> Any:
    """The completed value, or a Later when something below waits."""
    if not field.children_suspend:
        return _complete_now(field, output, value, context)
    if isinstance(output, GraphQLNonNull):
        if value is None:
            raise Unsupported(f"{field.key}: null for a non-null field")
        output = output.of_type
    if value is None:
        return None
    if isinstance(output, GraphQLList):
        # Every item is completed before any of them is waited for, as graphql-core's
        # concurrent completion does (loads from sibling items share one DataLoader batch).
        item_type = output.of_type
        completed: list[Any] = []
        waiting: list[int] = []
        try:
            for item in _items(field, value):
                result = _complete(field, item_type, item, context)
                if isinstance(result, Later):
                    waiting.append(len(completed))
                completed.append(result)
        except BaseException:
            # Those already waiting finish in the background, as gather's other tasks do:
            # graphql-core's second completion may share what they wait on.
            _abandon(completed[i] for i in waiting)
            raise
        return Later(_rest_of_list(completed, waiting)) if waiting else completed
    if field.children is not None:
        return _complete_object(field.children, value, context)
    return _serialize(field, output, value)


async def _rest_of_list(completed: list[Any], waiting: list[int]) -> list[Any]:
    if len(waiting) == 1:
        completed[waiting[0]] = await completed[waiting[0]]
        return completed
    # Concurrently, so what they wait on next is batched too.
    finished = await asyncio.gather(*(completed[i] for i in waiting))
    for index, result in zip(waiting, finished, strict=True):
        completed[index] = result
    return completed


_abandoned: set[asyncio.Future[Any]] = set()


def _abandon(waiting: Iterable[Later]) -> None:
    for later in waiting:
        task = asyncio.ensure_future(_quietly(later))
        _abandoned.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_abandoned.discard)


async def _quietly(later: Later) -> None:
    with contextlib.suppress(Exception):
        await later


def _complete_now(field: _Field, output: Any, value: Any, context: Any) -> Any:
    if isinstance(output, GraphQLNonNull):
        if value is None:
            raise Unsupported(f"{field.key}: null for a non-null field")
        output = output.of_type
    if value is None:
        return None
    if isinstance(output, GraphQLList):
        item_type = output.of_type
        return [_complete_now(field, item_type, i, context) for i in _items(field, value)]
    if field.children is not None:
        # Nothing below waits (no child suspends), so this is the object's data.
        return _complete_object(field.children, value, context)
    return _serialize(field, output, value)


def _items(field: _Field, value: Any) -> Any:
    if isinstance(value, str | bytes | dict) or not hasattr(value, "__iter__"):
        raise Unsupported(f"{field.key}: not a list")
    return value


def _serialize(field: _Field, output: Any, value: Any) -> Any:
    try:
        serialized = output.serialize(value)
    except Exception as error:
        raise Unsupported(f"{field.key}: {error!r}") from error
    if serialized is Undefined or serialized is None:
        raise Unsupported(f"{field.key}: not serialisable")
    return serialized


def start(
    coroutine: Coroutine[Any, Any, T],
) -> tuple[Literal[True], T] | tuple[Literal[False], Resumed[T]]:
    """Runs `coroutine` up to its first wait: (True, its result) when it finished without
    waiting, else (False, an awaitable of the rest). A task per item only to find that it
    never waits cost more than the item (asyncio's task and future bookkeeping was ~14% of
    the API's CPU serving pages)."""
    try:
        waits_on = coroutine.send(None)
    except StopIteration as finished:
        return True, finished.value
    return False, Resumed(coroutine, waits_on)


class Resumed(Generic[T]):
    """The rest of a coroutine `start` ran up to its first wait. Awaiting it hands what the
    coroutine waits on to the awaiting task and relays the task's wake-ups (and thrown
    exceptions, e.g. cancellation) back, as `await coroutine` would have from the start."""

    __slots__ = ("_coroutine", "_waits_on")

    def __init__(self, coroutine: Coroutine[Any, Any, T], waits_on: Any) -> None:
        self._coroutine = coroutine
        self._waits_on = waits_on

    def __await__(self) -> Generator[Any, Any, T]:
        coroutine, waits_on = self._coroutine, self._waits_on
        while True:
            try:
                sent = yield waits_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as error:
                try:
                    waits_on = coroutine.throw(error)
                except StopIteration as finished:
                    return cast(T, finished.value)
            else:
                try:
                    waits_on = coroutine.send(sent)
                except StopIteration as finished:
                    return cast(T, finished.value)
