from __future__ import annotations

import pytest

from models.generation import GenerationKind
from services.catalogue import load_catalogue, parse_catalogue
from services.errors import BadUserInput


def test_the_built_in_catalogue_prices_everything_in_one_place():
    catalogue = load_catalogue()
    assert {m.kind for m in catalogue.models.values()} >= {
        GenerationKind.IMAGE,
        GenerationKind.VIDEO,
        GenerationKind.TEXT,
    }
    assert all(route.provider == "local" for m in catalogue.models.values() for route in m.routes)
    assert catalogue.model(None, GenerationKind.IMAGE).id == "local-image"
    preset = catalogue.preset("express_enhance")
    assert preset.description == (
        "Quickly enhance sharpness, remove haze, and boost clarity for a more polished look."
    )
    assert (preset.negative_prompt, preset.strength) == ("blurry, hazy, soft, distorted", 0.7)
    assert preset.render_prompt("  a cat ").startswith("a cat, ")
    assert (
        catalogue.workflows["multi_view"].cost,
        catalogue.workflows["multi_view"].change_cost,
    ) == (3, 1)
    assert catalogue.charge_cache_hits is False


def test_unknown_or_mismatched_models_are_bad_input():
    catalogue = load_catalogue()
    with pytest.raises(BadUserInput):
        catalogue.model("nope", GenerationKind.IMAGE)
    with pytest.raises(BadUserInput):
        catalogue.model("local-video", GenerationKind.IMAGE)
    with pytest.raises(BadUserInput):
        catalogue.model(None, GenerationKind.MULTI_VIEW)


def test_a_preset_must_name_a_known_model():
    with pytest.raises(ValueError):
        parse_catalogue(
            {
                "models": {},
                "presets": {
                    "p": {"name": "P", "kind": "IMAGE", "model": "ghost", "prompt": "{prompt}"}
                },
            }
        )


def route_with(**fields: object) -> dict[str, object]:
    route = {"provider": "openai", "model": "m", **fields}
    return {"models": {"m": {"kind": "IMAGE", "cost_per_output": 1, "routes": [route]}}}


def test_a_route_lists_the_sizes_its_model_accepts():
    catalogue = parse_catalogue(route_with(sizes=["1024x1024", "1536x1024", "auto"]))
    assert catalogue.models["m"].routes[0].sizes == ("1024x1024", "1536x1024", "auto")
    assert parse_catalogue(route_with()).models["m"].routes[0].sizes is None


@pytest.mark.parametrize("sizes", [[], ["big"], ["1024*1024"], ["0x512"], ["1024x"]])
def test_malformed_route_sizes_are_refused(sizes):
    with pytest.raises(ValueError, match="sizes"):
        parse_catalogue(route_with(sizes=sizes))
