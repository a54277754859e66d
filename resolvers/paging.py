"""Connection arguments as the contract writes them: `first: Int = 20`, `failedOnly: Boolean =
false`. They are nullable with a default, and an explicit `null` means the default (as if the
argument were left out), never an error."""

from __future__ import annotations

from typing import Annotated

import strawberry

from services.pagination import MAX_PAGE, check_first

DEFAULT_FIRST = 20

First = Annotated[
    int | None,
    strawberry.argument(
        description=f"How many, 1 to {MAX_PAGE}; {DEFAULT_FIRST} when absent or null."
    ),
]


def page_size(first: int | None) -> int:
    """`first` as given (1 to 50, else BAD_USER_INPUT on `first`), or the default for null."""
    return check_first(DEFAULT_FIRST if first is None else first)
