"""Process wiring: the adapters behind Kiln's four small interfaces (database, broker sender,
pub/sub hub, output store) plus the catalogue and provider registry. The API server and the
worker processes both start a Runtime on the event loop that will use it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis

from models.config import close_database, open_database
from providers.registry import ProviderRegistry, build_registry
from realtime import channels
from realtime.hub import Hub, make_hub, set_hub
from services import error_events
from services.api_calls import record_call
from services.breakers import BreakerPolicy, MemoryBreakers, RedisBreakers
from services.catalogue import Catalogue, load_catalogue
from services.fetch import FetchTiming
from services.provider_limits import MemoryLimiter, ProviderLimit, RedisLimiter
from services.provider_routing.deps import ProviderDeps
from services.provider_routing.retries import RetryPolicy
from services.sweeper import sweep
from settings import Settings
from storage import OutputStore, make_store, set_store

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    catalogue: Catalogue
    providers: ProviderDeps
    store: OutputStore
    hub: Hub
    redis: aioredis.Redis | None
    _sweeper: asyncio.Task[None] | None = None

    @property
    def registry(self) -> ProviderRegistry:
        return self.providers.registry

    def start_sweeper(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="kiln-sweeper")

    async def _sweep_forever(self) -> None:
        interval = self.settings.sweep_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                # With several processes, one sweep per interval is enough.
                if self.redis is not None and not await self.redis.set(
                    f"{self.settings.redis_namespace}:sweeper:lock",
                    "1",
                    nx=True,
                    px=int(interval * 900),
                ):
                    continue
                await sweep(self.catalogue, self.settings.requeue_after_seconds)
            except Exception:
                log.exception("sweep failed")

    async def stop(self) -> None:
        await error_events.flush()  # error events still being written
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.hub.close()
        await self.providers.http.aclose()
        close = getattr(self.store, "close", None)  # the S3 store holds a client session
        if close is not None:
            await close()
        if self.redis is not None:
            await self.redis.aclose()
        set_hub(None)
        set_store(None)
        await close_database()


_current: Runtime | None = None


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("Kiln's runtime is not started")
    return _current


async def start_runtime(settings: Settings, *, migrate: bool) -> Runtime:
    global _current
    channels.configure(settings.redis_namespace)
    await open_database(settings, migrate=migrate)
    hub = make_hub(settings.redis_url)
    await hub.start()
    set_hub(hub)
    store = make_store(settings)
    set_store(store)
    redis = aioredis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    _current = Runtime(
        settings=settings,
        catalogue=load_catalogue(settings.catalogue_path),
        providers=build_provider_deps(settings, redis),
        store=store,
        hub=hub,
        redis=redis,
    )
    return _current


def build_provider_deps(settings: Settings, redis: aioredis.Redis | None) -> ProviderDeps:
    """Breakers and limits are shared through Redis when there is one (several worker
    processes), in memory otherwise."""
    policy = BreakerPolicy(
        failure_threshold=settings.breaker_failure_threshold,
        min_calls=settings.breaker_min_calls,
        window=settings.breaker_window_seconds,
        cooldown=settings.breaker_cooldown_seconds,
    )
    limits = {
        name: ProviderLimit(
            max_concurrent=_int(raw.get("max_concurrent")), per_minute=_int(raw.get("per_minute"))
        )
        for name, raw in settings.provider_limits.items()
    }
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
    namespace = settings.redis_namespace
    return ProviderDeps(
        registry=build_registry(settings, client, record_call),
        breakers=RedisBreakers(redis, policy, prefix=f"{namespace}:breaker")
        if redis is not None
        else MemoryBreakers(policy),
        limiter=RedisLimiter(redis, limits, prefix=f"{namespace}:limit")
        if redis is not None
        else MemoryLimiter(limits),
        retry=RetryPolicy(
            attempts=settings.provider_retry_attempts,
            max_total_wait=settings.provider_retry_max_wait_seconds,
        ),
        http=client,
        max_output_bytes=settings.max_output_bytes,
        max_input_bytes=settings.max_input_image_bytes,
        fetch_allow_hosts=frozenset(
            h.strip() for h in settings.fetch_allow_hosts.split(",") if h.strip()
        ),
        fetch_timing=FetchTiming(
            deadline=settings.fetch_deadline_seconds,
            min_rate=settings.fetch_min_bytes_per_second,
            grace=settings.fetch_rate_grace_seconds,
        ),
        webhook_base_url=settings.public_base_url or None,
    )


def _int(value: float | None) -> int | None:
    return int(value) if value is not None else None


async def stop_runtime() -> None:
    global _current
    if _current is not None:
        await _current.stop()
        _current = None
