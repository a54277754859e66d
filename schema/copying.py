"""Object types built from the service shape or row they show: most of their fields have the
same name and value there, so only the fields that differ are written out."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def copied(cls: type[T], source: object, **given: Any) -> T:
    """`cls` (a Strawberry type) with every field not `given` read from the attribute of the
    same name on `source`. Resolver fields are not constructor arguments, so are left alone;
    a field `source` lacks fails here, loudly, rather than showing a default."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # Strawberry types are dataclasses
    names = (f.name for f in fields if f.init and f.name not in given)
    return cls(**{name: getattr(source, name) for name in names}, **given)
