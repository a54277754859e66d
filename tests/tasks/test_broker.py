"""Workers look at an empty queue again within WORKER_POLL_MS, not Dramatiq's 1 s."""

from __future__ import annotations

import uuid
from typing import Any

from tasks.broker import KilnRedisBroker
from tests.support.services import need, redis_url


def test_idle_consumers_back_off_at_most_the_poll_interval() -> None:
    need("redis")
    broker = KilnRedisBroker(
        url=redis_url(11), namespace=f"kiln-test-{uuid.uuid4().hex}", poll_ms=100
    )
    try:
        broker.declare_queue("jobs")
        consumer: Any = broker.consume("jobs", prefetch=4, timeout=1000)
        assert consumer.timeout == 100
        quicker: Any = broker.consume("jobs", prefetch=4, timeout=20)
        assert quicker.timeout == 20
        consumer.close()
        quicker.close()
    finally:
        broker.close()


def test_actors_run_on_a_uvloop_event_loop_thread() -> None:
    """KilnAsyncIO starts Dramatiq's event loop thread on uvloop and stops it like AsyncIO."""
    import asyncio

    import uvloop
    from dramatiq.asyncio import get_event_loop_thread

    from tasks.broker import KilnAsyncIO

    middleware = KilnAsyncIO()
    middleware.before_worker_boot(None, None)  # type: ignore[arg-type]
    try:
        thread = get_event_loop_thread()
        assert thread is not None
        assert isinstance(thread.loop, uvloop.Loop)

        async def where() -> asyncio.AbstractEventLoop:
            await asyncio.sleep(0)
            return asyncio.get_running_loop()

        assert thread.run_coroutine(where()) is thread.loop
    finally:
        middleware.after_worker_shutdown(None, None)
    assert get_event_loop_thread() is None
