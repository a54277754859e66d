"""Channel names. A generation's changes go to its own channel and to its owner's."""

from __future__ import annotations

import uuid


def generation(generation_id: uuid.UUID | str) -> str:
    return f"kiln:generation:{generation_id}"


def user_generations(user_id: uuid.UUID | str) -> str:
    return f"kiln:user:{user_id}:generations"


def user_credits(user_id: uuid.UUID | str) -> str:
    return f"kiln:user:{user_id}:credits"
