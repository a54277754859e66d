"""A generation's `params` column as a typed shape.

The column stays JSON with camelCase keys: the API returns it as is (`Generation.params`),
the one-statement completion reads `numOutputs` in SQL, and rows written before this shape
existed must read the same. Code reads it through `GenerationParams.of(generation)` instead
of by key. A multi-view workflow also keeps its own state there (`phase`, `features`,
`feedback`); `services.workflows` reads those, and `of` keeps what it does not know."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from models.generation import Generation

# Field name -> JSON key, for the keys this shape knows.
_KEYS = {
    "num_outputs": "numOutputs",
    "width": "width",
    "height": "height",
    "seed": "seed",
    "strength": "strength",
    "input_image_url": "inputImageUrl",
    "view": "view",
    "view_index": "viewIndex",
    "workflow_attempt": "workflowAttempt",
}


@dataclass(frozen=True, slots=True)
class GenerationParams:
    num_outputs: int = 1
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    strength: float | None = None
    input_image_url: str | None = None
    # A workflow's view: which one, its place among the outputs, and the workflow's attempt
    # it was drawn for.
    view: str | None = None
    view_index: int | None = None
    workflow_attempt: int | None = None
    # Keys of the column this shape does not know (a workflow's own state), kept as they are.
    other: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, generation: Generation) -> GenerationParams:
        return cls.from_json(generation.params or {})

    @classmethod
    def from_json(cls, params: Mapping[str, Any]) -> GenerationParams:
        known = {name: params[key] for name, key in _KEYS.items() if params.get(key) is not None}
        if "num_outputs" in known:
            known["num_outputs"] = int(known["num_outputs"])
        other = {k: v for k, v in params.items() if k not in _REVERSE}
        return cls(**known, other=other)

    def to_json(self) -> dict[str, Any]:
        """The column's JSON: the set values under their camelCase keys (None is left out),
        then the other keys."""
        values = {key: getattr(self, name) for name, key in _KEYS.items()}
        return {k: v for k, v in values.items() if v is not None} | dict(self.other)


_REVERSE = frozenset(_KEYS.values())
