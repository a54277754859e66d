"""ProviderDeps for tests that run generations in-process: real adapters, breakers and
limits kept in memory, no retries' sleeping."""

from __future__ import annotations

import httpx

from providers.base import Provider
from providers.http import CallRecord
from providers.local import LocalProvider
from providers.registry import ProviderRegistry
from services.breakers import BreakerPolicy, MemoryBreakers
from services.provider_limits import MemoryLimiter, ProviderLimit
from services.provider_routing.deps import ProviderDeps
from services.provider_routing.retries import RetryPolicy

FAST_RETRIES = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01, max_total_wait=2.0)


def provider_deps(
    *extra: Provider,
    local_delay: float = 0.0,
    limits: dict[str, ProviderLimit] | None = None,
    breaker: BreakerPolicy | None = None,
    allow_hosts: frozenset[str] = frozenset({"127.0.0.1"}),
    webhook_base_url: str | None = None,
) -> ProviderDeps:
    providers: dict[str, Provider] = {"local": LocalProvider(step_delay=local_delay)}
    providers.update({p.name: p for p in extra})
    return ProviderDeps(
        registry=ProviderRegistry(providers),
        breakers=MemoryBreakers(breaker or BreakerPolicy()),
        limiter=MemoryLimiter(limits or {}),
        retry=FAST_RETRIES,
        http=httpx.AsyncClient(),
        max_output_bytes=10 * 1024 * 1024,
        max_input_bytes=5 * 1024 * 1024,
        fetch_allow_hosts=allow_hosts,
        webhook_base_url=webhook_base_url,
    )


class Progress:
    """A progress callback that remembers every report."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    async def __call__(self, fraction: float, stage: str) -> None:
        self.calls.append((fraction, stage))

    @property
    def fractions(self) -> list[float]:
        return [fraction for fraction, _ in self.calls]


class Sink:
    """A call sink that keeps the CallRecords adapters report."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    async def __call__(self, record: CallRecord) -> None:
        self.records.append(record)
