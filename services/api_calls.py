"""The API call log: one row per outbound provider call, and what admins read from it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tortoise import connections

from models.api_call import ApiCallLog
from providers.http import CallRecord
from providers.local import LocalProvider
from services.breakers import CircuitState
from services.pagination import Page, newest_first_by_id
from services.provider_routing.call_context import current_generation, current_request
from services.sql import dialect_sql

if TYPE_CHECKING:
    from services.catalogue import Catalogue
    from services.provider_routing.deps import ProviderDeps

log = logging.getLogger(__name__)
HEALTH_WINDOW = timedelta(minutes=5)
# Providers built into Kiln (they draw on this machine): no third-party API, so neither in the
# API call log nor in provider health, which are about the services Kiln pays and waits for.
BUILT_IN = frozenset({LocalProvider.name})


def third_party(provider: str) -> bool:
    return provider not in BUILT_IN


async def record_call(call: CallRecord) -> None:
    """The call sink given to every adapter. Never raises: logging a call must not fail it."""
    if not third_party(call.provider):
        return
    try:
        values = {
            "provider": call.provider,
            "model": call.model,
            "method": call.method,
            "url": call.url[:500],
            "generation_id": current_generation.get(),
            "request_id": current_request.get(),
            "status_code": call.status_code,
            "duration_ms": call.duration_ms,
            "ok": call.ok,
            "error": call.error,
            "created_at": datetime.now(UTC),
        }
        # Fixed SQL, not ApiCallLog.create: every provider call (a poll too) writes a row,
        # and building the model and its INSERT cost more CPU than running it.
        fields = ApiCallLog._meta.fields_map
        connection = connections.get("default")
        await connection.execute_query(
            dialect_sql(_INSERT_CALL, connection),
            [fields[name].to_db_value(value, ApiCallLog) for name, value in values.items()],
        )
    except Exception:
        log.exception("could not log a call to %s", call.provider)


_INSERT_CALL = """
INSERT INTO api_call_logs (provider, model, method, url, generation_id, request_id,
                           status_code, duration_ms, ok, error, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


async def list_calls(
    *, first: int, after: str | None, provider: str | None, failed_only: bool
) -> Page[ApiCallLog]:
    query = ApiCallLog.exclude(provider__in=sorted(BUILT_IN))
    if provider:
        query = query.filter(provider=provider)
    if failed_only:
        query = query.filter(ok=False)
    return await newest_first_by_id(query, first=first, after=after)


@dataclass(frozen=True)
class ProviderHealth:
    provider: str
    circuit: CircuitState
    calls: int
    success_rate: float
    p95_latency_ms: int | None
    last_error: str | None
    last_checked_at: datetime | None


async def health(catalogue: Catalogue, deps: ProviderDeps) -> list[ProviderHealth]:
    """Every third-party provider a route names or that is configured."""
    named = {route.provider for spec in catalogue.models.values() for route in spec.routes}
    providers = sorted(p for p in named | set(deps.registry.names) if third_party(p))
    breakers = deps.breakers
    since = datetime.now(UTC) - HEALTH_WINDOW
    report = []
    for provider in providers:
        rows = (
            await ApiCallLog.filter(provider=provider, created_at__gte=since)
            .order_by("-id")
            .limit(10_000)
            .values("ok", "duration_ms", "created_at")
        )
        durations = sorted(r["duration_ms"] for r in rows)
        ok = sum(1 for r in rows if r["ok"])
        last_failure = (
            await ApiCallLog.filter(provider=provider, ok=False)
            .order_by("-id")
            .first()
            .values_list("error")
        )
        report.append(
            ProviderHealth(
                provider=provider,
                circuit=await breakers.state(provider),
                calls=len(rows),
                success_rate=ok / len(rows) if rows else 1.0,
                p95_latency_ms=durations[min(len(durations) - 1, int(0.95 * len(durations)))]
                if durations
                else None,
                last_error=last_failure[0] if last_failure else None,
                last_checked_at=rows[0]["created_at"] if rows else None,
            )
        )
    return report
