"""Whether a resolver's caller selected a field below its own, for reading it with the
resolver's rows (a page of generations with their outputs in one statement, rather than a
DataLoader round after it).

Not Strawberry's `info.selected_fields`, although it answers the same: that converts the
field's whole selection (every field, argument and directive below it, fragments expanded)
into new objects on every request: ~20 times the cost of this walk for the generations page
(about 300 against 16 microseconds per request, measured on one machine), a large part of
what the fast path saves on a page. This walks only along the path asked about, over
graphql-core's nodes (reached through fastpath/internals.py, where every internal used is
listed and tested); it does not depend on the fast path being on. `@skip`/`@include` are
honoured; names are the schema's (camelCase). It may say more than is completed (a fragment
whose type condition never matches), never less: what it answers is read early, not decided
on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from graphql import (
    BooleanValueNode,
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionNode,
    VariableNode,
)
from strawberry.types import Info

from fastpath.internals import raw_info


def selects(info: Info[Any, Any], *path: str) -> bool:
    """Whether the selection of the field `info` resolves reaches the field `path`, e.g.
    `selects(info, "edges", "node", "outputs")`; True when it cannot tell."""
    raw = raw_info(info)
    if raw is None:
        return True
    walk = _Walk(raw.fragments, info.variable_values)
    return any(
        node.selection_set is not None and walk.reaches(node.selection_set.selections, path)
        for node in raw.field_nodes
    )


class _Walk:
    def __init__(self, fragments: dict[str, Any], variables: dict[str, Any]) -> None:
        self.fragments = fragments
        self.variables = variables

    def reaches(self, selections: Iterable[SelectionNode], path: tuple[str, ...]) -> bool:
        name, rest = path[0], path[1:]
        for selection in selections:
            if selection.directives and not self.included(selection):
                continue
            if isinstance(selection, FieldNode):
                if selection.name.value == name and (
                    not rest
                    or (
                        selection.selection_set is not None
                        and self.reaches(selection.selection_set.selections, rest)
                    )
                ):
                    return True
            elif isinstance(selection, InlineFragmentNode):
                if self.reaches(selection.selection_set.selections, path):
                    return True
            elif isinstance(selection, FragmentSpreadNode):
                # Validation refused cycles of fragments before any resolver ran.
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None and self.reaches(fragment.selection_set.selections, path):
                    return True
        return False

    def included(self, selection: SelectionNode) -> bool:
        for directive in selection.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                continue
            value = next((a.value for a in directive.arguments or () if a.name.value == "if"), None)
            if isinstance(value, VariableNode):
                condition = self.variables.get(value.name.value)
            else:
                condition = isinstance(value, BooleanValueNode) and value.value
            if condition is (name == "skip"):
                return False
        return True
