"""Webhooks from outside: payments (Stripe format) and queued providers' results."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import runtime
from models.error_event import ErrorCategory, Severity
from providers.base import ProviderError
from services import runner
from services.error_events import Occurrence, record
from services.payments import WebhookRejected, handle_payment_webhook


async def payment_webhook(request: Request) -> Response:
    """Stripe-format payment events. 200 once handled (or already handled), 400 with the
    reason when the signature or body is wrong, so Stripe shows why."""
    body = await request.body()
    try:
        outcome = await handle_payment_webhook(
            body,
            request.headers.get("stripe-signature"),
            runtime.current().settings,
            request_id=request.scope.get("state", {}).get("request_id"),
        )
    except WebhookRejected as rejected:
        return JSONResponse({"error": rejected.reason}, status_code=400)
    return JSONResponse({"received": True, "event": outcome.event_id, "action": outcome.action})


async def provider_webhook(request: Request) -> Response:
    """Results pushed by queued providers (Replicate, fal). 200 once handled or when the job
    is no longer waited on; 400 with the reason when the signature or body is wrong."""
    rt = runtime.current()
    body = await request.body()
    try:
        handled = await runner.handle_webhook(
            request.path_params["provider"],
            request.headers,
            body,
            rt.catalogue,
            rt.providers,
            rt.store,
        )
    except ProviderError as rejected:
        await record(
            Occurrence(
                severity=Severity.WARNING,
                category=ErrorCategory.WEBHOOK,
                message=f"Provider webhook rejected: {rejected.message}",
                error_code="WEBHOOK_REJECTED",
                request_id=request.scope.get("state", {}).get("request_id"),
                endpoint=request.url.path,
            )
        )
        return JSONResponse({"error": rejected.message}, status_code=400)
    return JSONResponse({"received": True, "handled": handled})
