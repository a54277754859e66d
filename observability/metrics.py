"""Prometheus metrics, defined once per process and rendered by /metrics.

With several uvicorn workers, set PROMETHEUS_MULTIPROC_DIR (an empty directory, wiped before
start, shared by the processes of one machine) in the environment that starts them: every
process then writes its samples there and any of them renders the sum. prometheus-client reads
the variable when it is first imported, so it must be set before the process starts."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from observability import logs

__all__ = ["CONTENT_TYPE_LATEST", "render"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_WORK_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)

GRAPHQL_REQUESTS = Counter(
    "kiln_graphql_requests_total",
    "GraphQL operations by type and outcome (OK or the first error's extensions.code).",
    ["operation_type", "code"],
)
GRAPHQL_LATENCY = Histogram(
    "kiln_graphql_request_duration_seconds",
    "Time to answer a GraphQL query or mutation.",
    ["operation_type"],
    buckets=_LATENCY_BUCKETS,
)
GENERATION_TRANSITIONS = Counter(
    "kiln_generation_transitions_total",
    "Generations entering each status (retries re-enter QUEUED; creations are not counted).",
    ["status"],
)
GENERATION_DURATION = Histogram(
    "kiln_generation_duration_seconds",
    "From start of processing to a final state, by model and final status.",
    ["model", "status"],
    buckets=_WORK_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "kiln_response_cache_lookups_total",
    "Response-cache lookups of cacheable requests, by result (hit, miss).",
    ["result"],
)
PROVIDER_CALLS = Counter(
    "kiln_provider_calls_total",
    "Calls to AI providers by outcome (ok, error, stopped).",
    ["provider", "outcome"],
)
PROVIDER_LATENCY = Histogram(
    "kiln_provider_call_duration_seconds",
    "Duration of provider calls.",
    ["provider"],
    buckets=_WORK_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "kiln_provider_errors_total",
    "Failed provider calls by error code.",
    ["provider", "code"],
)
WEBSOCKET_CONNECTIONS = Gauge(
    "kiln_websocket_connections",
    "Open WebSocket connections.",
    multiprocess_mode="livesum",
)
ACTIVE_SUBSCRIPTIONS = Gauge(
    "kiln_graphql_active_subscriptions",
    "GraphQL subscriptions currently streaming.",
    multiprocess_mode="livesum",
)
ERROR_OCCURRENCES = Counter(
    "kiln_error_occurrences_total",
    "Recorded error occurrences by severity and category.",
    ["severity", "category"],
)
DEPENDENCY_UNAVAILABLE = Counter(
    "kiln_dependency_unavailable_total",
    "Requests answered UNAVAILABLE (GraphQL) or 503 (HTTP) because a dependency did not answer,"
    " by dependency (database, redis, broker). Not recorded as error events.",
    ["dependency"],
)
REDIS_FALLBACKS = Counter(
    "kiln_redis_fallbacks_total",
    "Breaker and provider-limit operations decided in this process because Redis did not"
    " answer, by component (breakers, limits).",
    ["component"],
)
REDIS_DEGRADED = Gauge(
    "kiln_redis_degraded",
    "1 while a component (breakers, limits) of this process decides without Redis.",
    ["component"],
    multiprocess_mode="livemax",
)
# Garbage collection (observability/gc_pauses.py): the event loop stands still meanwhile.
GC_PAUSE = Histogram(
    "kiln_gc_pause_seconds",
    "Time the process stood still in each garbage collection, by generation (2: full).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
GC_PAUSE_MAX = Gauge(
    "kiln_gc_pause_max_seconds",
    "Longest garbage-collection pause of a live process since it started, by generation.",
    ["generation"],
    multiprocess_mode="livemax",
)
GC_COLLECTED = Counter(
    "kiln_gc_collected_objects_total",
    "Objects garbage collections found unreachable (reference cycles), by generation.",
    ["generation"],
)
# Set by the provider routing's circuit breakers (not written yet); defined now so dashboards
# and alerts can be built against it.
OPEN_BREAKERS = Gauge(
    "kiln_open_breakers",
    "Provider circuit breakers currently open.",
    multiprocess_mode="livemax",
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@contextmanager
def provider_call(
    provider: str, *, stopped: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Counts and times one provider call; the provider is in the log context meanwhile.
    Exceptions of the `stopped` types (the work was cancelled under us) are not errors."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        with logs.bound(provider=provider):
            yield
    except stopped:
        outcome = "stopped"
        raise
    except BaseException as error:
        outcome = "error"
        code = getattr(error, "code", None)
        PROVIDER_ERRORS.labels(
            provider, code if isinstance(code, str) else type(error).__name__
        ).inc()
        raise
    finally:
        PROVIDER_CALLS.labels(provider, outcome).inc()
        PROVIDER_LATENCY.labels(provider).observe(time.perf_counter() - started)


class _Snapshot(Collector):
    """Gauges computed at scrape time (e.g. queue depth read from the database)."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def gauge(
    name: str, documentation: str, labels: list[str], values: dict[tuple[str, ...], float]
) -> GaugeMetricFamily:
    """A gauge family for `render(extra=...)`; `values` maps label values to samples."""
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The exposition text: this process's metrics (or every process's, in multiprocess mode)
    followed by the scrape-time gauges in `extra`."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    snapshot = CollectorRegistry()
    snapshot.register(_Snapshot(extra))
    return body + generate_latest(snapshot)


def process_exited() -> None:
    """Drops this process's live gauges from the shared directory (call at shutdown)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid())
