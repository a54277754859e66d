"""Object types built from the service shape or row they show: most of their fields have the
same name and value there, so only the fields that differ are written out."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


# The names each type's constructor takes, read once per type: a page builds many objects.
_CONSTRUCTOR_FIELDS: dict[type, tuple[str, ...]] = {}


def _constructor_fields(cls: type) -> tuple[str, ...]:
    names = _CONSTRUCTOR_FIELDS.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)  # Strawberry types are dataclasses
        names = _CONSTRUCTOR_FIELDS[cls] = tuple(f.name for f in fields if f.init)
    return names


def copied(cls: type[T], source: object, **given: Any) -> T:
    """`cls` (a Strawberry type) with every field not `given` read from the attribute of the
    same name on `source`. Resolver fields are not constructor arguments, so are left alone;
    a field `source` lacks fails here, loudly, rather than showing a default."""
    values = {name: getattr(source, name) for name in _constructor_fields(cls) if name not in given}
    return cls(**values, **given)
