"""The catalogue: which models exist, what they cost, and which provider routes serve them.

Pricing lives here and nowhere else.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from models.generation import GenerationKind
from providers.sizes import parse_size
from services.errors import BadUserInput

DEFAULT_CATALOGUE = Path(__file__).with_name("default_catalogue.toml")


@dataclass(frozen=True)
class Route:
    provider: str
    model: str
    timeout: float = 60.0
    params: dict[str, Any] = field(default_factory=dict)
    # How long a queued (asynchronous) provider usually takes on this route: its jobs are
    # first polled then, until the workers have learned the duration from finished jobs.
    expected_seconds: float | None = None
    # The image sizes ("WxH", or "auto") the provider's model accepts: a requested size is
    # sent as the nearest of them. None leaves it to the adapter, which knows the sizes of
    # OpenAI's own image models and sends any other size as asked.
    sizes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.expected_seconds is not None and not self.expected_seconds > 0:
            raise ValueError(f"route {self.model!r}: expected_seconds must be positive")
        if self.sizes is not None:
            sizes = tuple(self.sizes)  # a TOML array arrives as a list
            if not sizes or any(s != "auto" and parse_size(s) is None for s in sizes):
                raise ValueError(
                    f"route {self.model!r}: sizes must list sizes such as '1024x1024' or 'auto'"
                )
            object.__setattr__(self, "sizes", sizes)


@dataclass(frozen=True)
class ModelSpec:
    id: str
    kind: GenerationKind
    cost_per_output: int
    time_limit: float
    routes: tuple[Route, ...]
    default: bool = False
    # Response cache: an identical request of the same user within the TTL is answered
    # with the earlier outputs instead of a new provider call.
    cache: bool = False
    # Takes an input image (image-to-image): every route's provider must support it.
    image_input: bool = False


@dataclass(frozen=True)
class PresetSpec:
    id: str
    name: str
    kind: GenerationKind
    model: str
    prompt: str
    cost: int
    tag: str | None = None
    description: str | None = None
    negative_prompt: str | None = None
    strength: float | None = None
    cache: bool = False

    def render_prompt(self, user_prompt: str) -> str:
        return self.prompt.replace("{prompt}", user_prompt.strip())


@dataclass(frozen=True)
class WorkflowPricing:
    cost: int  # held when the workflow starts
    change_cost: int = 0  # held again for each round of requested changes
    model: str | None = None  # the IMAGE model that draws the views
    views: tuple[str, ...] = ("back", "side", "top", "bottom")  # after the front view


@dataclass(frozen=True)
class Catalogue:
    models: dict[str, ModelSpec]
    presets: dict[str, PresetSpec]
    workflows: dict[str, WorkflowPricing] = field(default_factory=dict)
    # Whether a response-cache hit costs the same as a fresh generation.
    charge_cache_hits: bool = False
    cache_ttl: float = 24 * 3600

    def workflow(self, workflow_id: str) -> WorkflowPricing:
        spec = self.workflows.get(workflow_id)
        if spec is None or spec.model is None:
            raise BadUserInput(f"The {workflow_id} workflow is not offered.", field="kind")
        return spec

    def model(self, model_id: str | None, kind: GenerationKind) -> ModelSpec:
        if model_id is None:
            for spec in self.models.values():
                if spec.kind == kind and spec.default:
                    return spec
            raise BadUserInput(f"There is no default model for {kind.value}.", field="model")
        found = self.models.get(model_id)
        if found is None:
            raise BadUserInput(f"Unknown model {model_id!r}.", field="model")
        spec = found
        if spec.kind != kind:
            raise BadUserInput(
                f"Model {model_id!r} makes {spec.kind.value}, not {kind.value}.", field="model"
            )
        return spec

    def preset(self, preset_id: str) -> PresetSpec:
        spec = self.presets.get(preset_id)
        if spec is None:
            raise BadUserInput(f"Unknown preset {preset_id!r}.", field="preset")
        return spec

    def time_limit(self, model_id: str) -> float:
        spec = self.models.get(model_id)
        return spec.time_limit if spec else max(m.time_limit for m in self.models.values())


def parse_catalogue(data: dict[str, Any]) -> Catalogue:
    models = {
        model_id: ModelSpec(
            id=model_id,
            kind=GenerationKind(raw["kind"]),
            cost_per_output=int(raw["cost_per_output"]),
            time_limit=float(raw.get("time_limit", 300)),
            default=bool(raw.get("default", False)),
            image_input=bool(raw.get("image_input", False)),
            cache=bool(raw.get("cache", False)),
            routes=tuple(Route(**route) for route in raw["routes"]),
        )
        for model_id, raw in data.get("models", {}).items()
    }
    presets: dict[str, PresetSpec] = {}
    for preset_id, raw in data.get("presets", {}).items():
        model = models.get(raw["model"])
        if model is None:
            raise ValueError(f"preset {preset_id!r} names unknown model {raw['model']!r}")
        presets[preset_id] = PresetSpec(
            id=preset_id,
            name=raw["name"],
            kind=GenerationKind(raw["kind"]),
            model=raw["model"],
            prompt=raw["prompt"],
            cost=int(raw.get("cost", model.cost_per_output)),
            tag=raw.get("tag"),
            description=raw.get("description"),
            negative_prompt=raw.get("negative_prompt"),
            strength=raw.get("strength"),
            cache=bool(raw.get("cache", False)),
        )
    workflows = {
        workflow_id: WorkflowPricing(
            cost=int(raw["cost"]),
            change_cost=int(raw.get("change_cost", 0)),
            model=raw.get("model"),
            views=tuple(raw.get("views", WorkflowPricing.views)),
        )
        for workflow_id, raw in data.get("workflows", {}).items()
    }
    pricing = data.get("pricing", {})
    ttl = float(pricing.get("cache_ttl", 24 * 3600))
    return Catalogue(
        models=models,
        presets=presets,
        workflows=workflows,
        charge_cache_hits=bool(pricing.get("charge_cache_hits", False)),
        cache_ttl=ttl,
    )


@lru_cache(maxsize=4)
def load_catalogue(path: Path | None = None) -> Catalogue:
    with (path or DEFAULT_CATALOGUE).open("rb") as f:
        return parse_catalogue(tomllib.load(f))
