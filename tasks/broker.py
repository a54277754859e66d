"""The Dramatiq broker: Redis in production (workers run as `dramatiq tasks`), the stub
broker in embedded mode (worker threads inside the server process)."""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq
from dramatiq.asyncio import EventLoopThread, set_event_loop_thread
from dramatiq.broker import Consumer
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO

from settings import get_settings
from tasks.worker_boot import WorkerBoot


class KilnRedisBroker(RedisBroker):
    """Dramatiq's consumers back off up to the worker's timeout (1 s, not settable from the
    `dramatiq` command) when their queue is empty, so a job arriving at a quiet worker, or a
    delayed poll coming due, waited up to a second; WORKER_POLL_MS caps that wait."""

    def __init__(self, *, poll_ms: int, **options: Any) -> None:
        super().__init__(**options)
        self.poll_ms = poll_ms

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        return super().consume(queue_name, prefetch, min(timeout, self.poll_ms))


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with uvicorn[standard] on Linux): every generation is
    a dozen database and Redis round trips on the actors' one loop, and uvloop's transports
    and scheduling take less CPU per round trip than asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _LoopThread(EventLoopThread):
    """Dramatiq's event loop thread, on the loop `_new_loop` makes."""

    def __init__(self, logger: Any, interrupt_check_ival: float = 0.1) -> None:
        super().__init__(logger, interrupt_check_ival)
        self.loop: asyncio.AbstractEventLoop
        self.loop.close()  # the asyncio loop the base class made, never started
        self.loop = _new_loop()


class KilnAsyncIO(AsyncIO):
    """Dramatiq's AsyncIO middleware (the actors' coroutines run on one event loop thread
    per worker process), with that loop from `_new_loop`."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        thread = _LoopThread(self.logger)
        thread.start(timeout=1.0)
        set_event_loop_thread(thread)


def _make_broker() -> dramatiq.Broker:
    settings = get_settings()
    if settings.embedded:
        # The server runs the actors' coroutines on its own event loop (see web/embedded_worker.py).
        return StubBroker()
    broker = KilnRedisBroker(
        url=settings.redis_url,
        namespace=settings.redis_namespace,
        poll_ms=settings.worker_poll_ms,
    )
    # "after" hooks run in reverse order: WorkerBoot, added last, closes the runtime (once
    # in-flight messages finished) before AsyncIO stops the event loop it lives on.
    broker.add_middleware(KilnAsyncIO())
    broker.add_middleware(WorkerBoot(settings))
    return broker


broker = _make_broker()
dramatiq.set_broker(broker)
