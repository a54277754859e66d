"""Webhooks from outside: payments (Stripe format) and queued providers' results.

Anyone can POST here, so what a caller sends costs bounded work and leaves a bounded trace:
- a provider that is not configured has no webhook: a plain 404 that records nothing;
- a rejected webhook (bad signature or body) is recorded as one error group per provider and
  reason: the adapter's fixed reason, never the caller's text;
- a client address that has had WEBHOOK_REJECTIONS_PER_IP rejected webhooks in the rate-limit
  window is answered 429 for the rest of it, before its body is read or anything recorded.
  Only rejections count, so a provider's own deliveries are never throttled.
- when the database or Redis does not answer, 503 with {"code": "UNAVAILABLE", ...} and
  Retry-After (web/unavailable.py): the sender delivers again later; nothing is recorded."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import runtime
from models.error_event import ErrorCategory, Severity
from providers.base import ProviderError
from services import runner
from services.error_events import Occurrence, record
from services.payments import WebhookRejected, handle_payment_webhook
from services.rate_limits import Counters, MemoryCounters, RedisCounters, retry_after
from web.unavailable import answers_outages


@answers_outages
async def payment_webhook(request: Request) -> Response:
    """Stripe-format payment events. 200 once handled (or already handled), 400 with the
    reason when the signature or body is wrong, so Stripe shows why."""
    rejections = Rejections(request)
    if (throttled := await rejections.throttled()) is not None:
        return throttled
    body = await request.body()
    try:
        outcome = await handle_payment_webhook(
            body,
            request.headers.get("stripe-signature"),
            rejections.runtime.settings,
            request_id=_request_id(request),
        )
    except WebhookRejected as rejected:  # recorded by the payments service
        await rejections.count()
        return JSONResponse({"error": rejected.reason}, status_code=400)
    return JSONResponse({"received": True, "event": outcome.event_id, "action": outcome.action})


@answers_outages
async def provider_webhook(request: Request) -> Response:
    """Results pushed by queued providers (Replicate, fal). 200 once handled or when the job
    is no longer waited on; 400 with the reason when the signature or body is wrong; 404 for a
    provider that is not configured."""
    rejections = Rejections(request)
    rt = rejections.runtime
    provider = request.path_params["provider"]
    if rt.providers.registry.get(provider) is None:
        return JSONResponse({"error": "no such webhook"}, status_code=404)
    if (throttled := await rejections.throttled()) is not None:
        return throttled
    body = await request.body()
    try:
        handled = await runner.handle_webhook(
            provider, request.headers, body, rt.catalogue, rt.providers, rt.store
        )
    except ProviderError as rejected:
        await rejections.count()
        await record(
            Occurrence(
                severity=Severity.WARNING,
                category=ErrorCategory.WEBHOOK,
                # `provider` is a configured provider's name and the message its adapter's
                # fixed reason, so repeats land in one group however the body varies.
                message=f"{provider} webhook rejected: {rejected.message}",
                error_code="WEBHOOK_REJECTED",
                request_id=_request_id(request),
                endpoint=f"/webhooks/providers/{provider}",
                metadata={"provider": provider, "bodyBytes": len(body)},
            )
        )
        return JSONResponse({"error": rejected.message}, status_code=400)
    return JSONResponse({"received": True, "handled": handled})


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


# The counters of the running runtime (Redis when it has it, so every API process agrees).
_counters: tuple[Any, Counters] | None = None


def _counters_of(rt: Any) -> Counters:
    global _counters
    if _counters is None or _counters[0] is not rt:
        redis = getattr(rt, "redis", None)
        made: Counters = (
            RedisCounters(redis, prefix=f"{rt.settings.redis_namespace}:rate")
            if redis is not None
            else MemoryCounters()
        )
        _counters = (rt, made)
    return _counters[1]


class Rejections:
    """The rejected webhooks of one client address in the rate-limit window."""

    def __init__(self, request: Request) -> None:
        self.runtime = runtime.current()
        settings = self.runtime.settings
        client = request.client.host if request.client is not None else "unknown"
        self.key = f"webhook-rejections:ip:{client}"
        self.window = settings.rate_limit_window_seconds
        self.limit = settings.webhook_rejections_per_ip

    async def throttled(self) -> Response | None:
        """429 when this client has used up its rejections (a look, not a hit)."""
        window = await _counters_of(self.runtime).hit(self.key, self.window, cost=0)
        if window.count < self.limit:
            return None
        wait = retry_after(window)
        return JSONResponse(
            {"error": f"too many rejected webhooks; try again in {wait} s"},
            status_code=429,
            headers={"Retry-After": str(wait)},
        )

    async def count(self) -> None:
        await _counters_of(self.runtime).hit(self.key, self.window)
