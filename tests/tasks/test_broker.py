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
