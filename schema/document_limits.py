"""What a GraphQL document asks for, measured in time linear in the document: its depth, its
aliases, its root fields and the largest result it could produce.

A fragment can be spread many times and fragments spread fragments, so a document of a
kilobyte can stand for millions of fields once every spread is followed: a chain of twenty
fragments each spreading the next twice is 2^20 spreads of the last one. Walking spread by
spread (as Strawberry's depth and alias limiters do) takes seconds for such a document. Every
measure here visits each fragment once instead: fragments are measured in dependency order
(`dependency_order`), and a spread adds the measure already taken of its fragment. Walks are
iterative across spreads, so a long chain of fragments cannot exhaust the stack either (the
parser already caps how deeply selections nest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_interface_type,
    is_leaf_type,
    is_object_type,
)
from graphql.pyutils import Undefined

from services.pagination import MAX_PAGE

T = TypeVar("T")

# Measures are saturated here: a number this large is refused by any limit, and Python's
# integers need not grow with every doubling of a crafted document.
SATURATED = 10**15


def fragments_of(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    """The document's fragments by name (the first of a duplicated name; validation refuses
    duplicates)."""
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            fragments.setdefault(definition.name.value, definition)
    return fragments


def spreads_in(selection_set: SelectionSetNode) -> Iterator[str]:
    """The names of the fragments spread anywhere in `selection_set` (in nested fields and
    inline fragments too, not through other fragments)."""
    stack = [selection_set]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                yield selection.name.value
            elif (
                isinstance(selection, FieldNode | InlineFragmentNode)
                and selection.selection_set is not None
            ):
                stack.append(selection.selection_set)


def dependency_order(fragments: Mapping[str, FragmentDefinitionNode]) -> list[str]:
    """The fragments' names, each after every fragment it spreads. A cycle (which validation
    refuses) is broken where it is found, and spreads of unknown fragments are ignored."""
    order: list[str] = []
    entered: set[str] = set()

    def enter(name: str) -> tuple[str, Iterator[str]]:
        entered.add(name)
        return name, spreads_in(fragments[name].selection_set)

    for start in fragments:
        if start in entered:
            continue
        stack = [enter(start)]
        while stack:
            name, pending = stack[-1]
            following = next(pending, None)
            if following is None:
                stack.pop()
                order.append(name)
            elif following in fragments and following not in entered:
                stack.append(enter(following))
    return order


def measure_fragments(
    fragments: Mapping[str, FragmentDefinitionNode],
    measure: Callable[[FragmentDefinitionNode, Mapping[str, T]], T],
) -> dict[str, T]:
    """`measure` of every fragment, each measured once, after the fragments it spreads (their
    measures are in the mapping it is given; a fragment in a cycle misses its own)."""
    measured: dict[str, T] = {}
    for name in dependency_order(fragments):
        measured[name] = measure(fragments[name], measured)
    return measured


def operations_of(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]


def operation_named(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    """The operation `name` picks (the only one when `name` is None), as graphql-core does."""
    operations = operations_of(document)
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


# --- depth and aliases ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extent:
    depth: int  # levels of fields below the selection (a leaf field is 0, `me { id }` is 1)
    aliases: int  # aliased fields, every spread of a fragment counted again


_NOTHING = Extent(0, 0)


def _extent(selection_set: SelectionSetNode, fragments: Mapping[str, Extent]) -> Extent:
    depth = aliases = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.alias is not None:
                aliases += 1
            # Introspection fields are not counted or entered, as Strawberry's limiter does:
            # graphql-core's MaxIntrospectionDepthRule bounds them, and GraphiQL's own
            # introspection query is deeper than any sensible limit for data.
            if selection.selection_set is not None and not selection.name.value.startswith("__"):
                below = _extent(selection.selection_set, fragments)
                depth = max(depth, below.depth + 1)
                aliases += below.aliases
        elif isinstance(selection, InlineFragmentNode):
            below = _extent(selection.selection_set, fragments)
            depth = max(depth, below.depth)
            aliases += below.aliases
        elif isinstance(selection, FragmentSpreadNode):
            spread = fragments.get(selection.name.value, _NOTHING)
            depth = max(depth, spread.depth)
            aliases += spread.aliases
    return Extent(depth, min(aliases, SATURATED))


def limit_errors(document: DocumentNode, max_depth: int, max_aliases: int) -> list[GraphQLError]:
    """The document's operations deeper than `max_depth`, and more than `max_aliases` aliases
    in all its operations together, with the messages of Strawberry's limiters."""
    measured = measure_fragments(
        fragments_of(document), lambda fragment, known: _extent(fragment.selection_set, known)
    )
    errors = []
    total_aliases = 0
    for operation in operations_of(document):
        extent = _extent(operation.selection_set, measured)
        total_aliases += extent.aliases
        if extent.depth > max_depth:
            name = operation.name.value if operation.name else "anonymous"
            errors.append(
                GraphQLError(f"'{name}' exceeds maximum operation depth of {max_depth}", operation)
            )
    if total_aliases > max_aliases:
        errors.append(GraphQLError(f"{total_aliases} aliases found. Allowed: {max_aliases}"))
    return errors


# --- root fields ------------------------------------------------------------------------


def root_fields(document: DocumentNode, operation: OperationDefinitionNode) -> list[FieldNode]:
    """The operation's root fields (aliases included), in document order, through inline
    fragments and fragment spreads. Each fragment is entered once, as graphql-core collects
    fields: a fragment spread twice runs its fields once."""
    fragments = fragments_of(document)
    entered: set[str] = set()
    found: list[FieldNode] = []
    stack = [iter(operation.selection_set.selections)]
    while stack:
        selection = next(stack[-1], None)
        if selection is None:
            stack.pop()
        elif isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            stack.append(iter(selection.selection_set.selections))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in entered:
                entered.add(name)
                stack.append(iter(fragments[name].selection_set.selections))
    return found


# --- the size of a result ---------------------------------------------------------------

# The `first` argument of a connection field: its page holds at most that many edges.
FIRST: Literal["first"] = "first"

# How many items each list of objects in the schema can hold, and the connection fields whose
# `first` sets it, by "Type.field". A connection counts as `first` copies of everything below
# it (edge, node, page info): a slight overcount that keeps a fragment's count the same
# wherever it is spread. tests/schema/test_document_limits.py fails when a list field or a
# connection of the schema is missing here.
LIST_BOUNDS: dict[str, int | Literal["first"]] = {
    "Query.generations": FIRST,
    "Query.creditTransactions": FIRST,
    "Query.errorEvents": FIRST,
    "Query.apiCallLogs": FIRST,
    "Query.notifications": FIRST,
    # Counted by their connection's `first`.
    "GenerationConnection.edges": 1,
    "CreditTransactionConnection.edges": 1,
    "ErrorEventConnection.edges": 1,
    "ApiCallLogConnection.edges": 1,
    "NotificationConnection.edges": 1,
    # numOutputs is 1 to 4; a multi-view workflow holds its views (4 in the default catalogue).
    "Generation.outputs": 4,
    # A multi-view workflow: its front view, the views, and a front view per round of changes.
    "Generation.children": 8,
    # The catalogue's models and presets, and its providers.
    "Query.models": 100,
    "Query.presets": 100,
    "Query.providerHealth": 20,
    "Query.apiKeys": 20,  # MAX_API_KEYS_PER_USER's default
    "ErrorStats.bySeverity": 4,  # one per Severity
    "ErrorStats.byCategory": 11,  # one per ErrorCategory
    # Admin only, and empty unless the ledger is broken.
    "CreditAudit.mismatches": 100,
}


def list_fields(schema: GraphQLSchema) -> set[str]:
    """Every "Type.field" of the schema that returns a list of objects or takes `first`
    (introspection types aside): what LIST_BOUNDS must cover."""
    found = set()
    for type_name, named in schema.type_map.items():
        if type_name.startswith("__") or not (is_object_type(named) or is_interface_type(named)):
            continue
        for field_name, field in named.fields.items():
            if "first" in field.args or (
                _is_list(field.type) and not is_leaf_type(get_named_type(field.type))
            ):
                found.add(f"{type_name}.{field_name}")
    return found


def _is_list(output: Any) -> bool:
    while isinstance(output, GraphQLNonNull | GraphQLList):
        if isinstance(output, GraphQLList):
            return True
        output = output.of_type
    return False


@dataclass(frozen=True)
class _Sizing:
    schema: GraphQLSchema
    variables: Mapping[str, Any]
    defaults: Mapping[str, Any]  # the operation's variable defaults (value nodes)


def result_size(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
) -> int:
    """The most objects the operation's result could hold: for every object field, the
    product of the list bounds (LIST_BOUNDS, `first` as given) along its path, summed.
    Fragments count every time they are spread; introspection is left to graphql-core's
    MaxIntrospectionDepthRule."""
    sizing = _Sizing(
        schema,
        variables or {},
        {d.variable.name.value: d.default_value for d in operation.variable_definitions or ()},
    )
    fragments = fragments_of(document)

    def measure(fragment: FragmentDefinitionNode, known: Mapping[str, int]) -> int:
        named = schema.get_type(fragment.type_condition.name.value)
        return _objects(sizing, named, fragment.selection_set, known)

    measured = measure_fragments(fragments, measure)
    root = schema.get_root_type(operation.operation)
    return _objects(sizing, root, operation.selection_set, measured)


def _objects(
    sizing: _Sizing,
    parent: GraphQLNamedType | None,
    selection_set: SelectionSetNode,
    fragments: Mapping[str, int],
) -> int:
    total = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if selection.selection_set is None or name.startswith("__"):
                continue
            field = getattr(parent, "fields", {}).get(name)
            if field is None:
                continue  # validation reports it
            below = _objects(sizing, get_named_type(field.type), selection.selection_set, fragments)
            total += _items(sizing, parent, selection, field) * (1 + below)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            named = sizing.schema.get_type(condition.name.value) if condition else parent
            total += _objects(sizing, named, selection.selection_set, fragments)
        elif isinstance(selection, FragmentSpreadNode):
            total += fragments.get(selection.name.value, 0)
        if total >= SATURATED:
            return SATURATED
    return total


def _items(sizing: _Sizing, parent: GraphQLNamedType | None, node: FieldNode, field: Any) -> int:
    """How many objects one selection of the field stands for."""
    bound = LIST_BOUNDS.get(f"{getattr(parent, 'name', '')}.{node.name.value}")
    if bound == FIRST:
        return _first(sizing, node, field)
    if bound is not None:
        return int(bound)
    # A list field missing from the table (the test names it): count it as a full page.
    return MAX_PAGE if _is_list(field.type) else 1


def _first(sizing: _Sizing, node: FieldNode, field: Any) -> int:
    """The page size `first` asks for, within 0..MAX_PAGE (the connection refuses more)."""
    value: Any = Undefined
    argument = next((a for a in node.arguments or () if a.name.value == "first"), None)
    if argument is not None:
        literal = argument.value
        if isinstance(literal, VariableNode):
            name = literal.name.value
            if name in sizing.variables:
                value = sizing.variables[name]
            elif isinstance(sizing.defaults.get(name), IntValueNode):
                value = int(sizing.defaults[name].value)
        elif isinstance(literal, IntValueNode):
            value = int(literal.value)
    if value is Undefined:
        value = field.args["first"].default_value if "first" in field.args else Undefined
    if not isinstance(value, int) or isinstance(value, bool):
        return MAX_PAGE
    return max(0, min(value, MAX_PAGE))
