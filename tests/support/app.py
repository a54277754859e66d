"""The real ASGI app on a test's loop and database, and Prometheus text parsed for asserts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

import runtime
from server import create_app
from services.catalogue import load_catalogue
from services.provider_routing.deps import ProviderDeps
from tests.support.generations import registry

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def kiln_app(
    backend,
    monkeypatch,
    *,
    providers: ProviderDeps | None = None,
    redis: Any = None,
    **settings: Any,
) -> Starlette:
    """The real ASGI app on this test's loop and database (no lifespan: the backend fixture
    already opened the database, hub and store), with these `settings` changed. Its runtime
    has the built-in provider unless `providers` are given, and no Redis unless `redis` is."""
    configured = backend.settings.model_copy(update=settings)
    monkeypatch.setattr(
        runtime,
        "_current",
        SimpleNamespace(
            settings=configured,
            catalogue=load_catalogue(),
            providers=providers or registry(),
            store=backend.store,
            redis=redis,
        ),
    )
    return create_app(configured)


def app_client(backend, monkeypatch, **settings) -> httpx.AsyncClient:
    """An HTTP client of `kiln_app` (which reads each response whole)."""
    transport = httpx.ASGITransport(app=kiln_app(backend, monkeypatch, **settings))
    return httpx.AsyncClient(transport=transport, base_url="http://kiln.test")
