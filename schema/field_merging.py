"""Field selection merging (the GraphQL spec's "Field Selection Merging" rule), checked in time
linear in the document.

graphql-core's OverlappingFieldsCanBeMergedRule compares the fields of a response name pair by
pair, and the fragments spread side by side pair by pair: within Kiln's token cap, 390 copies
of `me { id }` took 0.8 s to validate and 150 fragments each selecting `parent { id }` 0.3 s.
Its complexity budget (500,000 units) stops it only after about a second.

This rule reaches the same verdicts with the algorithm XING published for Sangria (also adopted
by graphql-java): the fields of one response name are merged, and their sub-selections are
checked as one set, so each field is compared with one representative instead of with every
other field:
- same response shape: all fields of a response name return the same shape (the same list and
  non-null wrappers around the same leaf type, or around any object types), and so do their
  merged sub-fields, whatever their parents;
- same field for common parents: fields that can apply to the same object (the same parent
  object type, or an interface or union parent) are the same field with the same arguments, and
  their merged sub-fields are checked the same way.
Each set of fields is checked once (a fragment spread in many places yields the same sets,
which are remembered), and the work is capped (WORK_LIMIT) so that no document can make the
check expensive: past it the document is refused as too complex.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from graphql import (
    BooleanValueNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLOutputType,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    ValueNode,
    VariableNode,
    get_named_type,
    is_interface_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from graphql.utilities import type_from_ast

# Fields collected and compared per document, at most (about 2 µs each). GraphiQL's
# introspection query takes about 300, forty fragments on one node about 700; the widest
# document within the token cap (`me { id id ... }`, 1,990 times) about 8,000.
WORK_LIMIT = 15_000


class TooComplex(Exception):
    pass


@dataclass(frozen=True, slots=True, eq=False)
class _Field:
    node: FieldNode
    parent: GraphQLNamedType | None  # the type the field is selected on
    definition: GraphQLField | None  # None for an unknown field (another rule reports it)

    @property
    def named_type(self) -> GraphQLNamedType | None:
        return get_named_type(self.definition.type) if self.definition else None


_Fields = dict[str, list[_Field]]  # by response name, in document order


class FieldsCanMergeRule(ValidationRule):
    """Checks every operation, in place of OverlappingFieldsCanBeMergedRule. Errors name the
    response name and the reason, as graphql-core's do."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._schema = context.schema
        self._shapes_checked: set[frozenset[int]] = set()
        self._parents_checked: set[frozenset[int]] = set()
        self._arguments: dict[int, tuple[Any, ...]] = {}
        self._work = 0
        self._gave_up = False

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        # Operations only: every fragment they use is checked as part of them, and a fragment
        # they do not use is refused by NoUnusedFragmentsRule. Checking each fragment on its
        # own as well would collect a chain of n fragments n times over.
        self._check(node.selection_set, self._schema.get_root_type(node.operation))

    def _check(self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> None:
        if self._gave_up:
            return
        try:
            fields = self._collect([(selection_set, parent)])
            self._same_shape(fields)
            self._same_for_common_parents(fields)
        except TooComplex:
            self._gave_up = True
            self.report_error(
                GraphQLError(
                    "The document is too complex to validate: it selects the same fields too"
                    " many times. Select each field once."
                )
            )

    def _spend(self, units: int) -> None:
        self._work += units
        if self._work > WORK_LIMIT:
            raise TooComplex

    def _collect(
        self, selection_sets: Iterable[tuple[SelectionSetNode, GraphQLNamedType | None]]
    ) -> _Fields:
        """The fields of these selection sets by response name, through inline fragments and
        fragment spreads (each fragment entered once, as graphql-core collects them)."""
        fields: _Fields = {}
        entered: set[str] = set()
        stack = [(iter(s.selections), p) for s, p in reversed(list(selection_sets))]
        while stack:
            selections, parent = stack[-1]
            selection = next(selections, None)
            if selection is None:
                stack.pop()
                continue
            self._spend(1)
            if isinstance(selection, FieldNode):
                name = selection.name.value
                definition = (
                    parent.fields.get(name)
                    if is_object_type(parent) or is_interface_type(parent)
                    else None
                )
                key = selection.alias.value if selection.alias else name
                fields.setdefault(key, []).append(_Field(selection, parent, definition))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                named = type_from_ast(self._schema, condition) if condition else parent
                stack.append((iter(selection.selection_set.selections), named))
            elif isinstance(selection, FragmentSpreadNode):
                fragment_name = selection.name.value
                fragment = self.context.get_fragment(fragment_name)
                if fragment is None or fragment_name in entered:
                    continue
                entered.add(fragment_name)
                named = type_from_ast(self._schema, fragment.type_condition)
                stack.append((iter(fragment.selection_set.selections), named))
        return fields

    def _sub_fields(self, group: list[_Field]) -> _Fields | None:
        """The merged sub-selections of `group`, or None when none has any."""
        sets = [(f.node.selection_set, f.named_type) for f in group if f.node.selection_set]
        return self._collect(sets) if sets else None

    def _same_shape(self, fields: _Fields) -> None:
        for response_name, group in fields.items():
            key = frozenset(id(f.node) for f in group)
            if key in self._shapes_checked:
                continue
            self._shapes_checked.add(key)
            typed = [f for f in group if f.definition is not None]
            self._spend(len(typed))
            conflict = next(
                (
                    (typed[0], other)
                    for other in typed[1:]
                    if _types_conflict(typed[0].definition.type, other.definition.type)  # type: ignore[union-attr]
                ),
                None,
            )
            if conflict is not None:
                first, other = conflict
                self._report(
                    response_name,
                    f"they return conflicting types '{first.definition.type}'"  # type: ignore[union-attr]
                    f" and '{other.definition.type}'",  # type: ignore[union-attr]
                    [first.node, other.node],
                )
                continue
            if len(group) > 1 and any(_streamed(f.node) for f in group):
                self._report(
                    response_name, "they have overlapping stream directives", _nodes(group)
                )
                continue
            below = self._sub_fields(group)
            if below:
                self._same_shape(below)

    def _same_for_common_parents(self, fields: _Fields) -> None:
        for response_name, group in fields.items():
            for together in _by_common_parent(group):
                key = frozenset(id(f.node) for f in together)
                if key in self._parents_checked:
                    continue
                self._parents_checked.add(key)
                self._spend(len(together))
                first = together[0]
                reason = None
                for other in together[1:]:
                    if other.node.name.value != first.node.name.value:
                        reason = (
                            f"'{first.node.name.value}' and '{other.node.name.value}'"
                            " are different fields"
                        )
                    elif self._arguments_of(other.node) != self._arguments_of(first.node):
                        reason = "they have differing arguments"
                    if reason is not None:
                        self._report(response_name, reason, [first.node, other.node])
                        break
                if reason is not None:
                    continue
                below = self._sub_fields(together)
                if below:
                    self._same_for_common_parents(below)

    def _arguments_of(self, node: FieldNode) -> tuple[Any, ...]:
        known = self._arguments.get(id(node))
        if known is None:
            known = self._arguments[id(node)] = tuple(
                sorted((a.name.value, _value_key(a.value)) for a in node.arguments or ())
            )
        return known

    def _report(self, response_name: str, reason: str, nodes: list[FieldNode]) -> None:
        self.report_error(
            GraphQLError(
                f"Fields '{response_name}' conflict because {reason}."
                " Use different aliases on the fields to fetch both if this was intentional.",
                nodes,
            )
        )


def _by_common_parent(group: list[_Field]) -> list[list[_Field]]:
    """The fields of `group` that can apply to the same object, together: those on each
    object type, each with those on abstract (or unknown) types; two different object types
    never apply to the same object."""
    abstract = [f for f in group if not is_object_type(f.parent)]
    concrete: dict[int, list[_Field]] = {}
    for field in group:
        if is_object_type(field.parent):
            concrete.setdefault(id(field.parent), []).append(field)
    if not concrete:
        return [abstract]
    return [[*fields, *abstract] for fields in concrete.values()]


def _types_conflict(type1: GraphQLOutputType, type2: GraphQLOutputType) -> bool:
    """graphql-core's do_types_conflict: list and non-null wrappers must match, and leaf
    types must be the same; object types are compared through their fields."""
    while True:
        if type1 is type2:
            return False
        if is_list_type(type1) or is_list_type(type2):
            if not (is_list_type(type1) and is_list_type(type2)):
                return True
        elif is_non_null_type(type1) or is_non_null_type(type2):
            if not (is_non_null_type(type1) and is_non_null_type(type2)):
                return True
        else:
            return (is_leaf_type(type1) or is_leaf_type(type2)) and type1 is not type2
        type1, type2 = type1.of_type, type2.of_type


def _value_key(node: ValueNode) -> Any:
    """A value written in the document, comparable with ==: variables by name, object fields
    in any order (as graphql-core compares arguments)."""
    if isinstance(node, VariableNode):
        return ("$", node.name.value)
    if isinstance(node, ObjectValueNode):
        return ("{", tuple(sorted((f.name.value, _value_key(f.value)) for f in node.fields)))
    if isinstance(node, ListValueNode):
        return ("[", tuple(_value_key(v) for v in node.values))
    if isinstance(
        node, IntValueNode | FloatValueNode | StringValueNode | BooleanValueNode | EnumValueNode
    ):
        return (type(node).__name__, node.value)
    return (type(node).__name__,)  # null


def _streamed(node: FieldNode) -> bool:
    return any(d.name.value == "stream" for d in node.directives or ())


def _nodes(group: list[_Field]) -> list[FieldNode]:
    return [f.node for f in group]
