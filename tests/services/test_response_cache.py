from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from models.credits import LedgerEntry
from models.generation import Generation, GenerationKind, GenerationStatus
from models.user import User
from observability.metrics import CACHE_LOOKUPS
from services import credits, generations, response_cache, runner
from services.catalogue import load_catalogue
from services.generations import NewGeneration
from services.generations.params import GenerationParams
from tests.support.providers import provider_deps

CATALOGUE = load_catalogue()  # local-image is cacheable


def hits() -> float:
    return CACHE_LOOKUPS.labels("hit")._value.get()


async def made(user, backend, **fields) -> Generation:
    generation = await generations.create_generation(
        user, NewGeneration(prompt="a teapot", seed=42, width=64, height=64, **fields), CATALOGUE
    )
    await runner.run_generation(generation.id, CATALOGUE, provider_deps(), backend.store)
    return await Generation.get(id=generation.id)


async def test_an_identical_seeded_request_completes_at_once_from_the_cache(make_user, backend):
    user = await make_user(credits=5)
    first = await made(user, backend)
    assert first.status is GenerationStatus.COMPLETED
    before, sent = hits(), len(backend.sent)
    again = await generations.create_generation(
        user, NewGeneration(prompt="a teapot", seed=42, width=64, height=64), CATALOGUE
    )
    assert (again.status, again.stage, again.cost) == (
        GenerationStatus.COMPLETED,
        "completed from cache",
        0,
    )
    assert hits() == before + 1
    assert [a for a, *_ in backend.sent[sent:]] == []  # no job, no provider call
    assert [o.storage_key for o in await generations.outputs_of(again.id)] == [
        o.storage_key for o in await generations.outputs_of(first.id)
    ]
    assert await LedgerEntry.filter(generation_id=again.id).count() == 0
    assert (await credits.get_balance(user.id)).available == 4  # only the first was charged


async def test_what_is_not_a_hit(make_user, backend):
    user, other = await make_user(credits=10), await make_user()
    first = await made(user, backend)
    variants: list[tuple[User, dict[str, Any]]] = [
        (user, {"seed": 43}),
        (user, {"seed": None}),
        (other, {}),
        (user, {"num_outputs": 2}),
    ]
    for who, fields in variants:
        request = NewGeneration(prompt="a teapot", width=64, height=64, **{"seed": 42, **fields})
        generation = await generations.create_generation(who, request, CATALOGUE)
        assert generation.status is GenerationStatus.QUEUED, fields
    # Past the TTL the first no longer answers.
    await Generation.filter(id=first.id).update(
        completed_at=datetime.now(UTC) - timedelta(seconds=CATALOGUE.cache_ttl + 1)
    )
    late = await generations.create_generation(
        user, NewGeneration(prompt="a teapot", seed=42, width=64, height=64), CATALOGUE
    )
    assert late.status is GenerationStatus.QUEUED
    assert late.cache_key == first.cache_key


async def test_hits_are_charged_when_the_catalogue_says_so(make_user, backend):
    charging = dataclasses.replace(CATALOGUE, charge_cache_hits=True)
    user = await make_user(credits=5)
    await made(user, backend)
    again = await generations.create_generation(
        user, NewGeneration(prompt="a teapot", seed=42, width=64, height=64), charging
    )
    assert (again.status, again.cost) == (GenerationStatus.COMPLETED, 1)
    assert (await credits.get_balance(user.id)).available == 3


def test_key_order_never_matters():
    a = response_cache.cache_key(
        "m",
        GenerationKind.IMAGE,
        "p",
        None,
        GenerationParams.from_json({"seed": 1, "width": 64, "numOutputs": 1}),
    )
    b = response_cache.cache_key(
        "m",
        GenerationKind.IMAGE,
        "p",
        None,
        GenerationParams.from_json({"numOutputs": 1, "width": 64, "seed": 1}),
    )
    assert a == b and a is not None
    assert (
        response_cache.cache_key("m", GenerationKind.IMAGE, "p", None, GenerationParams()) is None
    )


def test_keys_of_earlier_generations_still_match():
    """The key hashes the params column's JSON, as it did when params were a dict."""
    canonical = {
        "model": "m",
        "kind": "IMAGE",
        "prompt": "p",
        "negativePrompt": None,
        "params": {"numOutputs": 1, "width": 64, "seed": 1},
    }
    expected = hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()
    params = GenerationParams(num_outputs=1, width=64, seed=1)
    assert response_cache.cache_key("m", GenerationKind.IMAGE, "p", None, params) == expected
