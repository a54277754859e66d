"""What subscribers are sent about a generation: its whole visible state after each change,
published after commit on the generation's channel and its owner's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from models.generation import Generation
from realtime import channels
from services.events import publish_after_commit
from services.generations.outputs import StoredOutput


def announce(generation: Generation, outputs: list[StoredOutput]) -> None:
    """Publish the generation's state, with these outputs, after commit."""
    message = snapshot(generation, outputs)
    publish_after_commit(channels.generation(generation.id), message)
    publish_after_commit(channels.user_generations(generation.user_id), message)


def snapshot(generation: Generation, outputs: list[StoredOutput]) -> dict[str, Any]:
    """The whole visible state, as published to subscribers (JSON-safe; read back by key on
    the other side of the channel, by `schema.types.Generation.from_message`)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": str(generation.id),
        "user_id": str(generation.user_id),
        "parent_id": str(generation.parent_id) if generation.parent_id else None,
        "kind": generation.kind.value,
        "status": generation.status.value,
        "progress": generation.progress,
        "stage": generation.stage,
        "model": generation.model,
        "preset": generation.preset,
        "provider": generation.provider,
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "params": generation.params,
        "cost": generation.cost,
        "attempts": generation.attempts,
        "error_code": generation.error_code,
        "error_message": generation.error_message,
        "version": generation.version,
        "created_at": iso(generation.created_at),
        "started_at": iso(generation.started_at),
        "completed_at": iso(generation.completed_at),
        "outputs": [o.__dict__ for o in outputs],
    }
