"""What a process needs to reach providers, built once by the runtime and handed to the
runner, the resolvers (provider health, model availability) and the webhooks."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from providers.registry import ProviderRegistry
from services.breakers import Breakers
from services.fetch import FetchTiming
from services.provider_limits import Limiter
from services.provider_routing.retries import RetryPolicy


@dataclass
class ProviderDeps:
    """What the runner needs to reach providers; built once per process by the runtime."""

    registry: ProviderRegistry
    breakers: Breakers
    limiter: Limiter
    retry: RetryPolicy
    http: httpx.AsyncClient  # downloads of provider outputs
    max_output_bytes: int
    max_input_bytes: int
    fetch_allow_hosts: frozenset[str]
    webhook_base_url: str | None  # providers POST results to {base}/webhooks/providers/{name}
    # How long a fetch of an input image or a provider output may take (FETCH_* settings).
    fetch_timing: FetchTiming = field(default_factory=FetchTiming)

    def webhook_url(self, provider: str) -> str | None:
        if not self.webhook_base_url:
            return None
        return f"{self.webhook_base_url.rstrip('/')}/webhooks/providers/{provider}"
