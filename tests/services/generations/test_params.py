"""The params column read through GenerationParams: the same JSON as before, typed."""

from __future__ import annotations

from services.generations.params import GenerationParams
from tests.support.generations import create


def test_the_column_round_trips_and_keeps_what_it_does_not_know():
    stored = {"numOutputs": 2, "seed": 7, "inputImageUrl": "https://x/y.png", "phase": "views"}
    params = GenerationParams.from_json(stored)
    assert (params.num_outputs, params.seed, params.input_image_url) == (2, 7, "https://x/y.png")
    assert params.width is None and params.other == {"phase": "views"}
    assert params.to_json() == stored


def test_a_row_without_a_count_asks_for_one_output():
    assert GenerationParams.from_json({}).num_outputs == 1
    assert GenerationParams.from_json({"numOutputs": "3"}).num_outputs == 3


async def test_a_new_generation_stores_the_camelcase_column(make_user, backend):
    user = await make_user(credits=5)
    generation = await create(user, num_outputs=2, width=512, seed=3)
    assert generation.params == {"numOutputs": 2, "width": 512, "seed": 3}
    assert GenerationParams.of(generation) == GenerationParams(num_outputs=2, width=512, seed=3)
