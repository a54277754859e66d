"""Which adapter serves a provider name. A provider is configured when its credentials are
set; `local` always is."""

from __future__ import annotations

import httpx

from providers.base import Provider
from providers.fal import FalProvider
from providers.gemini import GeminiProvider
from providers.http import CallSink, ProviderHTTP
from providers.local import LocalProvider
from providers.openai import OpenAIProvider
from providers.replicate import ReplicateProvider
from providers.stability import StabilityProvider
from settings import Settings


class ProviderRegistry:
    def __init__(self, providers: dict[str, Provider]) -> None:
        self._providers = providers

    def get(self, name: str) -> Provider | None:
        return self._providers.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._providers)


def build_registry(
    settings: Settings, client: httpx.AsyncClient | None = None, sink: CallSink | None = None
) -> ProviderRegistry:
    providers: dict[str, Provider] = {
        "local": LocalProvider(step_delay=settings.local_provider_delay)
    }
    if client is None:
        return ProviderRegistry(providers)

    def http(name: str) -> ProviderHTTP:
        return ProviderHTTP(name, client, sink)

    if settings.openai_api_key:
        providers["openai"] = OpenAIProvider(
            http("openai"), settings.openai_api_key, settings.openai_base_url
        )
    if settings.gemini_api_key:
        providers["gemini"] = GeminiProvider(
            http("gemini"), settings.gemini_api_key, settings.gemini_base_url
        )
    if settings.replicate_api_token:
        providers["replicate"] = ReplicateProvider(
            http("replicate"),
            settings.replicate_api_token,
            settings.replicate_base_url,
            settings.replicate_webhook_secret or None,
        )
    if settings.fal_key:
        providers["fal"] = FalProvider(
            http("fal"), settings.fal_key, settings.fal_base_url, settings.fal_jwks_url
        )
    if settings.stability_api_key:
        providers["stability"] = StabilityProvider(
            http("stability"), settings.stability_api_key, settings.stability_base_url
        )
    return ProviderRegistry(providers)
