"""attach/detach: a mailbox whose owner changes hands (the WebSocket transport keeps it after
the resolver returned) is received until detached, once, and a failed attach leaves nothing."""

from __future__ import annotations

import asyncio

import pytest

from realtime.hub import InProcessHub
from realtime.mailbox import Mailbox

CHANNEL = "kiln:test:attach"


async def test_attached_mailbox_receives_until_detached_and_detach_twice_is_harmless():
    hub = InProcessHub()
    box = await hub.attach(CHANNEL)
    await hub.publish(CHANNEL, {"id": "a", "version": 1})
    async with asyncio.timeout(5):
        assert await anext(aiter(box)) == {"id": "a", "version": 1}
    other = await hub.attach(CHANNEL)
    await hub.detach(box)
    await hub.detach(box)
    assert hub.local_subscriptions == 1  # the other subscriber stays
    await hub.detach(other)
    assert hub.local_subscriptions == 0


async def test_failed_attach_leaves_no_subscriber():
    class Failing(InProcessHub):
        async def _listen(self, channel: str) -> None:
            raise ConnectionError("backend down")

    hub = Failing()
    with pytest.raises(ConnectionError):
        await hub.attach(CHANNEL)
    assert hub.local_subscriptions == 0


def test_mailboxes_have_no_instance_dict():
    """One per subscription, alive as long as it is: slots only."""
    assert not hasattr(Mailbox((CHANNEL,)), "__dict__")
