"""What a resolver's caller selected below its field, for reading it with the resolver's own
rows (a page of generations with their outputs in one statement, rather than a DataLoader
round after it).

Built on Strawberry's public `info.selected_fields` (fragments already expanded) rather than
on the fast path's compiled projections, so it answers the same with FAST_PATH_ENABLED off.
`@skip`/`@include` are honoured; names are the schema's (camelCase). It may only say more
than is completed (a field under a fragment whose type condition never matches), never less:
what it answers is read early, not decided on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection


def selects(info: Info[Any, Any], *path: str) -> bool:
    """Whether the selection of the field `info` resolves reaches the field `path`, e.g.
    `selects(info, "edges", "node", "outputs")`."""
    return any(_reaches(field.selections, path) for field in info.selected_fields)


def _reaches(selections: Iterable[Selection], path: tuple[str, ...]) -> bool:
    name, rest = path[0], path[1:]
    for selection in selections:
        if _skipped(selection.directives):
            continue
        if not isinstance(selection, SelectedField):  # a fragment: its fields are this level's
            if _reaches(selection.selections, path):
                return True
        elif selection.name == name and (not rest or _reaches(selection.selections, rest)):
            return True
    return False


def _skipped(directives: dict[str, dict[str, Any]]) -> bool:
    return directives.get("skip", {}).get("if") is True or (
        directives.get("include", {}).get("if") is False
    )
