"""Creating a generation: validation, pricing, idempotency, the response cache, and the hold
of its cost with the queued row; the job leaves after commit."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from tortoise import connections
from tortoise.exceptions import IntegrityError

from models.generation import (
    Generation,
    GenerationKind,
    GenerationStatus,
    HoldState,
)
from models.user import User
from services import credits, response_cache
from services.catalogue import Catalogue
from services.errors import BadUserInput, Conflict
from services.fetch import FetchRefused, check_url
from services.generations.messages import announce
from services.generations.outputs import insert_outputs, outputs_of
from services.generations.params import GenerationParams
from services.generations.repository import (
    IDEMPOTENCY_WINDOW,
    Guard,
    row_and_extra,
    transition,
)
from services.generations.repository import now as _now
from services.jobs import enqueue_after_commit
from services.unit_of_work import atomic, effects_only


@dataclass(frozen=True)
class NewGeneration:
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


def _validate(new: NewGeneration) -> None:
    def check(ok: bool, field: str, message: str) -> None:
        if not ok:
            raise BadUserInput(message, field=field)

    check(
        len(new.prompt.strip()) >= 1 and len(new.prompt) <= 4000,
        "prompt",
        "The prompt must be 1 to 4000 characters.",
    )
    check(
        new.negative_prompt is None or len(new.negative_prompt) <= 4000,
        "negativePrompt",
        "The negative prompt must be at most 4000 characters.",
    )
    check(1 <= new.num_outputs <= 4, "numOutputs", "numOutputs must be 1 to 4.")
    for name, value in (("width", new.width), ("height", new.height)):
        check(value is None or 64 <= value <= 2048, name, f"{name} must be 64 to 2048.")
    check(
        new.strength is None or 0.0 <= new.strength <= 1.0,
        "strength",
        "strength must be between 0 and 1.",
    )
    check(
        new.seed is None or 0 <= new.seed <= 2**31 - 1,
        "seed",
        "seed must be between 0 and 2147483647.",
    )
    check(
        new.idempotency_key is None or 1 <= len(new.idempotency_key) <= 255,
        "idempotencyKey",
        "idempotencyKey must be 1 to 255 characters.",
    )
    check(new.model is None or len(new.model) <= 120, "model", "Unknown model.")
    check(new.preset is None or len(new.preset) <= 120, "preset", "Unknown preset.")
    if new.input_image_url is not None:
        check(
            len(new.input_image_url) <= 2048
            and new.input_image_url.lower().startswith(("http://", "https://")),
            "inputImageUrl",
            "inputImageUrl must be an http(s) URL.",
        )


def _request_hash(new: NewGeneration) -> str:
    canonical = orjson.dumps(new.__dict__, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


async def create_generation(
    user: User,
    new: NewGeneration,
    catalogue: Catalogue,
    *,
    request_id: str | None = None,
    fetch_allow_hosts: frozenset[str] = frozenset(),
) -> Generation:
    """Validate, price, hold the credits and queue the work; the job leaves after commit.
    A cacheable request answered by the response cache is returned COMPLETED at once."""
    _validate(new)
    preset = catalogue.preset(new.preset) if new.preset else None
    if preset is not None and preset.kind != new.kind:
        raise BadUserInput(f"Preset {preset.id!r} makes {preset.kind.value}.", field="preset")
    workflow = None
    if new.kind is GenerationKind.MULTI_VIEW:
        # A product's views: drawn by the workflow's image model, priced by the workflow.
        workflow = catalogue.workflow("multi_view")
        if new.num_outputs != 1:
            raise BadUserInput("A multi-view workflow makes one set of views.", field="numOutputs")
        spec = catalogue.model(new.model or workflow.model, GenerationKind.IMAGE)
    else:
        spec = catalogue.model(new.model or (preset.model if preset else None), new.kind)
    if new.input_image_url is not None:
        if not spec.image_input:
            raise BadUserInput(
                f"Model {spec.id!r} does not take an input image.", field="inputImageUrl"
            )
        try:
            # Checked now for a clear answer; the worker fetches it with the same checks.
            await check_url(new.input_image_url, fetch_allow_hosts)
        except FetchRefused as refused:
            raise BadUserInput(
                f"inputImageUrl is refused: {refused}.", field="inputImageUrl"
            ) from refused
    per_output = preset.cost if preset else spec.cost_per_output
    cost = workflow.cost if workflow else per_output * new.num_outputs
    params = GenerationParams(
        num_outputs=new.num_outputs,
        width=new.width,
        height=new.height,
        seed=new.seed,
        strength=new.strength if new.strength is not None or preset is None else preset.strength,
        input_image_url=new.input_image_url,
    )
    prompt = preset.render_prompt(new.prompt) if preset else new.prompt
    negative_prompt = new.negative_prompt or (preset.negative_prompt if preset else None)
    request_hash = _request_hash(new) if new.idempotency_key else None
    if new.idempotency_key:
        existing = await _idempotent_replay(user, new.idempotency_key, request_hash)
        if existing is not None:
            return existing
    key = None
    if spec.cache or (preset is not None and preset.cache):
        key = response_cache.cache_key(spec.id, new.kind, prompt, negative_prompt, params)
    cached = await response_cache.lookup(user.id, key, catalogue.cache_ttl) if key else None
    row = _NewRow(
        user_id=user.id,
        kind=new.kind,
        model=spec.id,
        preset=preset.id if preset else None,
        prompt=prompt,
        negative_prompt=negative_prompt,
        params=params.to_json(),
        cost=0 if cached and not catalogue.charge_cache_hits else cost,
        request_id=request_id,
        idempotency_key=new.idempotency_key,
        request_hash=request_hash,
        cache_key=key,
    )
    try:
        if cached is None and row.cost > 0:
            queued = await _queue_at_once(row, priority=user.priority)
            if queued is not None:
                return queued
        async with atomic():
            generation = await Generation.create(
                **dataclasses.asdict(row),
                status=GenerationStatus.QUEUED,
                stage="queued",
                hold=HoldState.HELD,
                queued_at=_now(),
            )
            await credits.reserve_for(generation)
            if cached is not None:
                return await _answer_from_cache(generation, cached)
            announce(generation, [])
            enqueue_after_commit(generation.id, priority=user.priority)
    except IntegrityError:
        # A concurrent request with the same idempotency key won the insert.
        if new.idempotency_key:
            existing = await _idempotent_replay(user, new.idempotency_key, request_hash)
            if existing is not None:
                return existing
        raise
    return generation


@dataclass(frozen=True, slots=True)
class _NewRow:
    """What a new generation's row is made of, beyond the state every new one starts in."""

    user_id: uuid.UUID
    kind: GenerationKind
    model: str
    preset: str | None
    prompt: str
    negative_prompt: str | None
    params: dict[str, Any]
    cost: int
    request_id: str | None
    idempotency_key: str | None
    request_hash: str | None
    cache_key: str | None


# A new generation and the hold of its cost as one PostgreSQL statement (one round trip, no
# BEGIN or COMMIT: the statement is atomic on its own). The hold is `credits.hold_ctes`,
# the same guard and ledger key as `credits.reserve_for`; its account UPDATE comes first:
# when the owner has no account or not enough available credit it matches nothing, and then
# neither the generation nor the ledger entry is written.
_HOLD, _HOLD_ENTRY = credits.hold_ctes(cost="$1", user_id="$2", generation="gen", created_at="$16")
_QUEUE_AT_ONCE = f"""
WITH {_HOLD}, gen AS (
    INSERT INTO generations (id, user_id, kind, status, progress, stage, model, preset, prompt,
        negative_prompt, params, cost, hold, attempts, version, request_id, idempotency_key,
        request_hash, cache_key, created_at, queued_at)
    SELECT $3, $2, $4, $5, 0, 'queued', $6, $7, $8, $9, $10, $1, $11, 1, 1, $12, $13, $14,
           $15, $16, $16
    FROM account
    RETURNING *
), {_HOLD_ENTRY}
SELECT gen.*, {credits.MOVED_COLUMNS}
FROM gen, account, entry
"""


async def _queue_at_once(new: _NewRow, *, priority: bool) -> Generation | None:
    """`create_generation`'s insert and hold in one statement on PostgreSQL (see
    _QUEUE_AT_ONCE), with the same effects after it; None elsewhere (the caller takes the
    steps). Raises as the steps would when the account cannot hold the cost."""
    connection = connections.get("default")
    if connection.capabilities.dialect != "postgres":
        return None
    generation_id, now = uuid.uuid4(), _now()
    params_field = Generation._meta.fields_map["params"]
    values: list[Any] = [
        new.cost,
        str(new.user_id),
        str(generation_id),
        new.kind.value,
        GenerationStatus.QUEUED.value,
        new.model,
        new.preset,
        new.prompt,
        new.negative_prompt,
        params_field.to_db_value(new.params, Generation),
        HoldState.HELD.value,
        new.request_id,
        new.idempotency_key,
        new.request_hash,
        new.cache_key,
        now,
    ]
    async with effects_only():
        rows = await connection.execute_query_dict(_QUEUE_AT_ONCE, values)
        if not rows:
            await credits.refused(new.user_id, -new.cost)
        generation, extra = row_and_extra(rows[0])
        # The steps' effects, in their order: the owner's balance, the new state, the job.
        credits.announce_moved(generation.user_id, extra)
        announce(generation, [])
        enqueue_after_commit(generation.id, priority=priority)
    return generation


async def _answer_from_cache(generation: Generation, cached: Generation) -> Generation:
    """Complete a new generation with the cached one's outputs (the same stored files: they
    are never modified or deleted once completed)."""
    outputs = await outputs_of(cached.id)
    await insert_outputs(generation.id, outputs)
    now = _now()
    done = await transition(
        generation.id,
        Guard((GenerationStatus.QUEUED,)),
        status=GenerationStatus.COMPLETED,
        progress=1.0,
        stage="completed from cache",
        provider=cached.provider,
        started_at=now,
        completed_at=now,
        publish=False,
    )
    assert done is not None  # inserted in this transaction
    await credits.capture_for(generation.id)
    announce(done, outputs)
    return done


async def _idempotent_replay(user: User, key: str, request_hash: str | None) -> Generation | None:
    existing = await Generation.get_or_none(user_id=user.id, idempotency_key=key)
    if existing is None:
        return None
    if existing.created_at < _now() - IDEMPOTENCY_WINDOW:
        # Expired but not yet pruned: free the key for this new request.
        await Generation.filter(id=existing.id).update(idempotency_key=None)
        return None
    if existing.request_hash != request_hash:
        raise Conflict("This idempotency key was already used for a different request.")
    return existing
