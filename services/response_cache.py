"""The response cache: an identical, deterministic request of the same user within the
catalogue's TTL is answered at once with the earlier generation's outputs.

Identical means the same canonical content: model, kind, final prompt, negative prompt,
size, count, strength and seed, as JSON with sorted keys (so key order never matters).
Only requests that give a seed are cached: without one, asking again means "another
variation". Requests with an input image are not cached (its content is only known once the
worker fetched it)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson

from models.generation import Generation, GenerationKind, GenerationStatus
from observability.metrics import CACHE_LOOKUPS

if TYPE_CHECKING:  # imported for its type only: services.generations uses this module
    from services.generations.params import GenerationParams


def cache_key(
    model: str,
    kind: GenerationKind,
    prompt: str,
    negative_prompt: str | None,
    params: GenerationParams,
) -> str | None:
    if params.seed is None or params.input_image_url or kind is GenerationKind.MULTI_VIEW:
        return None
    canonical = {
        "model": model,
        "kind": kind.value,
        "prompt": prompt,
        "negativePrompt": negative_prompt,
        "params": params.to_json(),
    }
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def lookup(user_id: uuid.UUID, key: str, ttl: float) -> Generation | None:
    since = datetime.now(UTC) - timedelta(seconds=ttl)
    hit = (
        await Generation.filter(
            user_id=user_id,
            cache_key=key,
            status=GenerationStatus.COMPLETED,
            completed_at__gte=since,
        )
        .order_by("-completed_at")
        .first()
    )
    CACHE_LOOKUPS.labels("hit" if hit else "miss").inc()
    return hit
