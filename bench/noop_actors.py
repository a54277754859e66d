"""A Dramatiq module with one no-op actor on Kiln's broker settings (Redis, the run's own
namespace), for the pipeline benchmark's raw limit:

    BENCH_REDIS_URL=... BENCH_NAMESPACE=... dramatiq bench.noop_actors --processes N --threads T

Each message only bumps a Redis counter, so the benchmark can see how many were processed."""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
NAMESPACE = os.environ.get("BENCH_NAMESPACE", "kiln-bench-noop")
COUNTER = f"{NAMESPACE}:done"

broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE)
dramatiq.set_broker(broker)
_counter = redis.Redis.from_url(REDIS_URL)


@dramatiq.actor(actor_name="bench.noop", queue_name="bench-noop", max_retries=0)
def noop(index: int) -> None:
    _counter.incr(COUNTER)
