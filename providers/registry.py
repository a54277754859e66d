"""Which adapter serves a provider name."""

from __future__ import annotations

from providers.base import Provider
from providers.local import LocalProvider
from settings import Settings


class ProviderRegistry:
    def __init__(self, providers: dict[str, Provider]) -> None:
        self._providers = providers

    def get(self, name: str) -> Provider | None:
        return self._providers.get(name)


def build_registry(settings: Settings) -> ProviderRegistry:
    return ProviderRegistry({"local": LocalProvider(step_delay=settings.local_provider_delay)})
