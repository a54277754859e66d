"""What a completed generation is charged: its whole cost, unless the provider delivered
only part of a batch, which is charged per delivered output (the rest is refunded). The rule
in Python for the steps, and as SQL for the one-statement completion, side by side."""

from __future__ import annotations

from models.generation import Generation, GenerationKind
from services.generations.params import GenerationParams


def charge(generation: Generation, delivered: int) -> int | None:
    """What to capture of the hold for `delivered` outputs; None captures the whole cost."""
    requested = GenerationParams.of(generation).num_outputs
    if generation.kind is GenerationKind.MULTI_VIEW or not 0 < delivered < requested:
        return None
    return generation.cost * delivered // requested


def charged_in_full_sql(delivered: str) -> str:
    """True for a row of `generations` that `charge` charges in full when `delivered` (an
    SQL expression, at least 1) outputs arrived."""
    return (
        f"(kind = '{GenerationKind.MULTI_VIEW.value}' "
        f"OR COALESCE((params->>'numOutputs')::int, 1) <= {delivered})"
    )
