"""ProviderDeps for tests that run generations in-process: real adapters, breakers and
limits kept in memory, no retries' sleeping."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from providers.base import (
    Finished,
    ProgressCallback,
    Provider,
    ProviderError,
    ProviderOutput,
    ProviderRequest,
    Result,
)
from providers.http import CallRecord
from providers.local import LocalProvider
from providers.registry import ProviderRegistry
from services.breakers import BreakerPolicy, MemoryBreakers
from services.provider_limits import MemoryLimiter, ProviderLimit
from services.provider_routing.deps import ProviderDeps
from services.provider_routing.retries import RetryPolicy
from tests.support.private_servers import PrivateRedis

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


async def generate(provider: Provider, req: ProviderRequest) -> list[ProviderOutput]:
    """Starts `req` on an adapter that answers at once; the outputs it finished with."""
    result = await provider.start(req, Progress())
    assert isinstance(result, Finished)
    return result.outputs


async def failure(provider: Provider, req: ProviderRequest) -> ProviderError:
    """Starts `req` on an adapter that must refuse it; the ProviderError it raised."""
    with pytest.raises(ProviderError) as caught:
        await provider.start(req, Progress())
    return caught.value


def image_of(output: ProviderOutput) -> Image.Image:
    """The output's bytes decoded (and fully read, so a truncated file fails here)."""
    image = Image.open(io.BytesIO(output.data or b""))
    image.load()
    return image


def assert_logged_without(sink: Sink, provider: str, secret: str) -> None:
    """Every call the adapter logged is under its name, and none carries the secret."""
    for record in sink.records:
        assert secret not in repr(record)
        assert record.provider == provider


def assert_key_kept_secret(sink: Sink, api_key: str, error: ProviderError | None = None) -> None:
    """The key went in a header only: never in a logged URL or record, nor in the error."""
    assert sink.records
    for record in sink.records:
        assert "?" not in record.url
        assert api_key not in repr(record)
    if error is not None:
        assert api_key not in error.message
        assert api_key not in str(error)


class KillsRedisMidCall(LocalProvider):
    """The built-in provider, whose call ends after Redis died under it."""

    def __init__(self, server: PrivateRedis) -> None:
        super().__init__(step_delay=0.0)
        self.server = server

    async def start(self, request: ProviderRequest, progress: ProgressCallback) -> Result:
        result = await super().start(request, progress)
        self.server.kill()
        return result
