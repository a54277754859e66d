from __future__ import annotations

import strawberry

from schema.enums import GenerationKind


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
