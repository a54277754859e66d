from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest

from models.credits import LedgerEntry, LedgerKind
from models.error_event import ErrorEvent
from services import credits
from services.payments import WebhookRejected, handle_payment_webhook, verify_signature
from tests.support.payments import OLD_SECRET, SECRET, checkout_event, sign


@pytest.fixture
def settings(backend):
    return backend.settings.model_copy(update={"payment_webhook_secret": SECRET})


async def purchases(user_id) -> list[LedgerEntry]:
    return await LedgerEntry.filter(user_id=user_id, kind=LedgerKind.PURCHASE)


async def test_a_valid_payment_grants_the_pack_once_even_when_replayed(make_user, settings):
    user = await make_user(credits=5)
    body = checkout_event(user.id, "pro")
    outcomes = [await handle_payment_webhook(body, sign(body), settings) for _ in range(4)]
    assert [o.action for o in outcomes] == ["granted", "duplicate", "duplicate", "duplicate"]
    assert (await credits.get_balance(user.id)).available == 505
    assert len(await purchases(user.id)) == 1


async def test_concurrent_deliveries_of_one_payment_grant_once(make_user, settings):
    user = await make_user(credits=0)
    body = checkout_event(user.id, "starter")
    outcomes = await asyncio.gather(
        *[handle_payment_webhook(body, sign(body), settings) for _ in range(6)]
    )
    assert sorted(o.action for o in outcomes).count("granted") == 1
    assert (await credits.get_balance(user.id)).available == 100


async def test_another_event_for_the_same_payment_transaction_does_nothing(make_user, settings):
    user = await make_user(credits=0)
    first = checkout_event(user.id, "starter", payment="pi_same")
    second = checkout_event(user.id, "starter", payment="pi_same")
    assert (await handle_payment_webhook(first, sign(first), settings)).action == "granted"
    assert (await handle_payment_webhook(second, sign(second), settings)).action == "duplicate"
    assert (await credits.get_balance(user.id)).available == 100


@pytest.mark.parametrize(
    "case",
    [
        "tampered",
        "wrong secret",
        "stale",
        "future",
        "missing",
        "malformed header",
        "not json",
        "unknown pack",
        "no user",
    ],
)
async def test_bad_deliveries_are_rejected_and_write_nothing_but_an_error_event(
    make_user, settings, case
):
    user = await make_user(credits=0)
    body = checkout_event(user.id)
    header: str | None = sign(body)
    if case == "tampered":
        body = body.replace(b'"starter"', b'"premium"')
    elif case == "wrong secret":
        header = sign(body, secret="whsec_attacker")
    elif case == "stale":
        header = sign(body, at=int(time.time()) - 301)
    elif case == "future":
        header = sign(body, at=int(time.time()) + 301)
    elif case == "missing":
        header = None
    elif case == "malformed header":
        header = "v1=abc"
    elif case == "not json":
        body = b"{not json"
        header = sign(body)
    elif case == "unknown pack":
        body = checkout_event(user.id, pack="mega")
        header = sign(body)
    elif case == "no user":
        body = checkout_event(uuid.uuid4())
        header = sign(body)
    before = await ErrorEvent.filter(error_code="WEBHOOK_REJECTED").count()
    with pytest.raises(WebhookRejected):
        await handle_payment_webhook(body, header, settings, request_id="req-hook")
    assert await purchases(user.id) == []
    assert (await credits.get_balance(user.id)).available == 0
    events = await ErrorEvent.filter(error_code="WEBHOOK_REJECTED")
    assert sum(e.count for e in events) >= before + 1
    assert {e.category.value for e in events} <= {"WEBHOOK", "PAYMENT"}


async def test_rotated_secrets_and_several_signatures(make_user, settings):
    user = await make_user(credits=0)
    rotating = settings.model_copy(update={"payment_webhook_secret": f"{SECRET},{OLD_SECRET}"})
    body = checkout_event(user.id)
    assert (
        await handle_payment_webhook(body, sign(body, OLD_SECRET), rotating)
    ).action == "granted"
    # Stripe signs with every active secret while one rolls: any matching v1 passes.
    body = checkout_event(user.id)
    timestamp = int(time.time())
    header = (
        sign(body, "whsec_unknown", at=timestamp)
        + ","
        + sign(body, SECRET, at=timestamp).split(",")[1]
    )
    assert (await handle_payment_webhook(body, header, settings)).action == "granted"
    assert (await credits.get_balance(user.id)).available == 200


async def test_other_event_types_and_unpaid_sessions_are_acknowledged_and_ignored(
    make_user, settings
):
    user = await make_user(credits=0)
    for event in (
        {"id": "evt_1", "type": "customer.created", "data": {"object": {}}},
        {
            "id": "evt_2",
            "type": "checkout.session.completed",
            "data": {
                "object": {
                    "id": "cs_1",
                    "payment_status": "unpaid",
                    "metadata": {"user_id": str(user.id), "pack": "pro"},
                }
            },
        },
    ):
        body = orjson.dumps(event)
        assert (await handle_payment_webhook(body, sign(body), settings)).action == "ignored"
    assert (await credits.get_balance(user.id)).available == 0


def test_signature_verification_without_secrets_refuses():
    with pytest.raises(WebhookRejected):
        verify_signature(b"{}", sign(b"{}"), [], 300)


def session_event(user_id, session: str, payment: str | None, status: str = "paid") -> bytes:
    """A Checkout Session event as Stripe sends it; without `payment_intent` when it has none
    yet (a free or fully discounted session, or delivered before the payment was attached)."""
    checkout: dict[str, object] = {
        "id": session,
        "object": "checkout.session",
        "payment_status": status,
        "metadata": {"user_id": str(user_id), "pack": "starter"},
    }
    if payment is not None:
        checkout["payment_intent"] = payment
    return orjson.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "checkout.session.completed",
            "data": {"object": checkout},
        }
    )


@pytest.mark.parametrize("first_has_payment", [False, True])
async def test_one_checkout_session_grants_once_with_or_without_its_payment_intent(
    make_user, settings, first_has_payment
):
    user = await make_user(credits=0)
    session, payment = f"cs_test_{uuid.uuid4().hex}", f"pi_{uuid.uuid4().hex}"
    deliveries = [session_event(user.id, session, None), session_event(user.id, session, payment)]
    if first_has_payment:
        deliveries.reverse()
    actions = [
        (await handle_payment_webhook(body, sign(body), settings)).action for body in deliveries
    ]
    assert actions == ["granted", "duplicate"]
    assert (await credits.get_balance(user.id)).available == 100
    assert len(await purchases(user.id)) == 1


async def test_concurrent_deliveries_of_one_session_with_and_without_payment_grant_once(
    make_user, settings
):
    user = await make_user(credits=0)
    session, payment = f"cs_test_{uuid.uuid4().hex}", f"pi_{uuid.uuid4().hex}"
    bodies = [session_event(user.id, session, None), session_event(user.id, session, payment)] * 3
    outcomes = await asyncio.gather(
        *[handle_payment_webhook(body, sign(body), settings) for body in bodies]
    )
    assert [o.action for o in outcomes].count("granted") == 1
    assert (await credits.get_balance(user.id)).available == 100


async def test_a_grant_keyed_on_the_payment_intent_by_an_earlier_version_is_still_a_duplicate(
    make_user, settings
):
    user = await make_user(credits=0)
    payment = f"pi_{uuid.uuid4().hex}"
    assert await credits.purchase(user.id, 100, payment)  # how earlier versions granted
    body = session_event(user.id, f"cs_test_{uuid.uuid4().hex}", payment)
    assert (await handle_payment_webhook(body, sign(body), settings)).action == "duplicate"
    assert (await credits.get_balance(user.id)).available == 100
