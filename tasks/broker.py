"""The Dramatiq broker: Redis in production (workers run as `dramatiq tasks`), the stub
broker in embedded mode (worker threads inside the server process)."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AsyncIO

from settings import get_settings
from tasks.worker_boot import WorkerBoot


def _make_broker() -> dramatiq.Broker:
    settings = get_settings()
    if settings.embedded:
        # The server runs the actors' coroutines on its own event loop (see server.py).
        return StubBroker()
    broker = RedisBroker(url=settings.redis_url, namespace=settings.redis_namespace)
    # "after" hooks run in reverse order: WorkerBoot, added last, closes the runtime (once
    # in-flight messages finished) before AsyncIO stops the event loop it lives on.
    broker.add_middleware(AsyncIO())
    broker.add_middleware(WorkerBoot(settings))
    return broker


broker = _make_broker()
dramatiq.set_broker(broker)
