"""What an admin on call and a user see when a generation fails, through the real worker:
FAILED, refunded, one error occurrence carrying the request id, one notification."""

from __future__ import annotations

import pytest

from tests.e2e import api
from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e

NOTIFICATIONS = (
    "subscription { notifications { kind severity title message generationId actionLabel } }"
)
EVENTS = """query { errorEvents(first: 50, filter: {category: [GENERATION]}) { edges { node {
  errorCode count userFacing lastOccurrence { requestId userId metadata } } } } }"""


async def test_a_failed_generation_is_reported_to_its_owner_and_to_admins(stack: Running):
    account = await api.register(stack.client)
    async with await api.GraphQLSocket.open(stack.ws_url, account.token) as socket:
        told = await socket.subscribe(NOTIFICATIONS)
        response = await stack.client.http.post(
            "/graphql",
            json={
                "query": api.CREATE,
                "variables": {"input": api.image_input(model="local-broken")},
            },
            headers={"Authorization": f"Bearer {account.token}"},
        )
        request_id = response.headers["x-request-id"]
        created = response.json()["data"]["createGeneration"]
        last = (await api.watch(stack.ws_url, account, created["id"]))[-1]
        assert last["status"] == "FAILED"
        [message] = await told.collect_until(
            lambda m: m["notifications"]["generationId"] == created["id"]
        )
    notification = message["notifications"]
    assert (notification["kind"], notification["actionLabel"]) == ("GENERATION_FAILED", "Try again")
    assert "refund" in notification["message"].lower()
    assert await api.balance(stack.client, account) == {"available": 5, "reserved": 0, "total": 5}
    events = (await stack.client.data(EVENTS, token=stack.admin_token))["errorEvents"]["edges"]
    mine = [
        e["node"]
        for e in events
        if (e["node"]["lastOccurrence"] or {}).get("requestId") == request_id
    ]
    assert len(mine) == 1
    assert mine[0]["errorCode"] == "ALL_PROVIDERS_FAILED" and mine[0]["userFacing"]
    assert mine[0]["lastOccurrence"]["userId"] == account.user_id
