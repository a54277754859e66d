from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, TypeVar

import strawberry
from strawberry.schema.name_converter import NameConverter
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryOptional, get_object_definition
from strawberry.types.enum import StrawberryEnumDefinition

from schema.enums import GenerationKind

T = TypeVar("T")
_LEAVES = (str, int, float, bool)


def flat_input(cls: type[T]) -> type[T]:
    """An input type whose fields are all scalars or enums, built straight from the value
    graphql-core coerced: for such fields Strawberry's own conversion returns each value as
    it is, after resolving every field's type again on every request (a tenth of the CPU of
    a `createGeneration`). Strawberry's `from_input` hook lets a type build itself."""
    definition = get_object_definition(cls, strict=True)
    for field in definition.fields:
        kind: Any = field.resolve_type()
        if isinstance(kind, StrawberryOptional):
            kind = kind.of_type
        if kind not in _LEAVES and not isinstance(kind, StrawberryEnumDefinition):
            raise TypeError(f"{cls.__name__}.{field.python_name} is not a scalar or an enum")
    definition.from_input = _from_flat_input
    return cls


def _from_flat_input(cls: Any, value: Mapping[str, Any], context: InputContext) -> Any:
    names = _names(cls, context.config.name_converter)
    return cls(**{python: value[graphql] for graphql, python in names if graphql in value})


@functools.cache
def _names(cls: type, converter: NameConverter) -> tuple[tuple[str, str], ...]:
    """(GraphQL name, Python name) of each field."""
    fields = get_object_definition(cls, strict=True).fields
    return tuple((converter.from_field(f), f.python_name) for f in fields)


@flat_input
@strawberry.input
class CreateGenerationInput:
    prompt: str
    kind: GenerationKind = GenerationKind.IMAGE
    model: str | None = None
    preset: str | None = None
    negative_prompt: str | None = None
    input_image_url: str | None = None
    strength: float | None = None
    num_outputs: int = 1
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    idempotency_key: str | None = None
