"""Payments arrive as Stripe-format webhooks: verify the signature, then grant the pack's
credits exactly once per Checkout Session and per payment intent."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from models.error_event import ErrorCategory, Severity
from services import credits
from services.error_events import Occurrence, record
from services.errors import NotFound
from settings import Settings

GRANTING_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


class WebhookRejected(Exception):
    def __init__(self, reason: str, category: ErrorCategory = ErrorCategory.WEBHOOK) -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: str
    action: str  # "granted", "duplicate" or "ignored"


def verify_signature(
    body: bytes, header: str | None, secrets: list[str], tolerance: int, now: float | None = None
) -> None:
    """Stripe's scheme: `t=<unix>,v1=<hex>[,v1=<hex>…]`, v1 = HMAC-SHA256(secret, "{t}.{body}").
    Any v1 matching any configured secret passes, so rotation works on both sides."""
    if not secrets:
        raise WebhookRejected("payment webhooks are not configured")
    if not header:
        raise WebhookRejected("missing Stripe-Signature header")
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or not signatures:
        raise WebhookRejected("malformed Stripe-Signature header")
    if abs((now if now is not None else time.time()) - int(timestamp)) > tolerance:
        raise WebhookRejected("signature timestamp outside the tolerance")
    signed = timestamp.encode() + b"." + body
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return
    raise WebhookRejected("no valid signature")


async def handle_payment_webhook(
    body: bytes, signature: str | None, settings: Settings, *, request_id: str | None = None
) -> WebhookOutcome:
    try:
        verify_signature(
            body,
            signature,
            settings.payment_webhook_secrets,
            settings.payment_webhook_tolerance_seconds,
        )
        event = _parse(body)
        return await _apply(event, settings)
    except WebhookRejected as rejected:
        await record(
            Occurrence(
                severity=Severity.WARNING
                if rejected.category is ErrorCategory.WEBHOOK
                else Severity.ERROR,
                category=rejected.category,
                message=f"Payment webhook rejected: {rejected.reason}",
                error_code="WEBHOOK_REJECTED",
                request_id=request_id,
                function_name="payments.handle_payment_webhook",
                endpoint="/webhooks/payments",
                metadata={"bodyBytes": len(body)},
            )
        )
        raise


def _parse(body: bytes) -> dict[str, Any]:
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise WebhookRejected("body is not JSON") from error
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("type"), str)
    ):
        raise WebhookRejected("body is not an event")
    return event


async def _apply(event: dict[str, Any], settings: Settings) -> WebhookOutcome:
    if event["type"] not in GRANTING_EVENTS:
        return WebhookOutcome(event["id"], "ignored")
    session = (event.get("data") or {}).get("object")
    if not isinstance(session, dict):
        raise WebhookRejected("event has no data.object", ErrorCategory.PAYMENT)
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        return WebhookOutcome(event["id"], "ignored")  # async payments grant on success
    metadata = session.get("metadata") or {}
    pack = metadata.get("pack")
    if pack not in settings.credit_packs:
        raise WebhookRejected(f"unknown credit pack {pack!r}", ErrorCategory.PAYMENT)
    try:
        user_id = uuid.UUID(str(metadata.get("user_id") or session.get("client_reference_id")))
    except ValueError as error:
        raise WebhookRejected("metadata.user_id is not a user id", ErrorCategory.PAYMENT) from error
    # A Checkout Session is one purchase, and so is its payment intent, which a delivery may
    # carry or not (attached after the session completed; none for a free session). The
    # session id, in every delivery, is the grant's unique key, so deliveries with and without
    # the intent race on one key; the intent is the grant's reference, so another session
    # naming it (or a grant keyed on it by earlier versions) is a duplicate too.
    session_id, payment_intent = session.get("id"), session.get("payment_intent")
    intent = payment_intent if isinstance(payment_intent, str) and payment_intent else None
    transaction_id = session_id if isinstance(session_id, str) and session_id else intent
    if transaction_id is None:
        raise WebhookRejected("no payment transaction id", ErrorCategory.PAYMENT)
    try:
        granted = await credits.purchase(
            user_id,
            settings.credit_packs[pack],
            transaction_id,
            also_known_as=intent if intent != transaction_id else None,
        )
    except NotFound as error:
        raise WebhookRejected("metadata.user_id names no user", ErrorCategory.PAYMENT) from error
    return WebhookOutcome(event["id"], "granted" if granted else "duplicate")
