"""Stripe-format payment events and their signatures, as a payment provider sends them."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import orjson

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"


def sign(body: bytes, secret: str = SECRET, at: int | None = None) -> str:
    timestamp = str(at if at is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def checkout_event(user_id, pack: str = "starter", payment: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": f"cs_test_{uuid.uuid4().hex}",
                    "object": "checkout.session",
                    "payment_intent": payment or f"pi_{uuid.uuid4().hex}",
                    "payment_status": "paid",
                    "metadata": {"user_id": str(user_id), "pack": pack},
                }
            },
        }
    )
