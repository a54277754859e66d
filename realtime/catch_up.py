"""What a process re-reads when its pub/sub connection comes back.

Redis keeps nothing for a subscriber that is away: what was published while this process's
pub/sub connection was down is lost for its subscribers, and a final state is never followed
by another change that would make good for it. So once the hub is subscribed again
(realtime/hub.py), it reads the current state of what its subscribers follow, as the
messages a change would have published, and hands them to their mailboxes, which keep only
what is newer than what each subscriber has (realtime/versions.py):

- a generation's channel: that generation;
- a user's generations: those that may have changed, that is every one not final and every
  one that ended since shortly before the connection was lost;
- a user's balance: the account.

Channels of events (notifications, error groups) carry no state to re-read."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterator
from datetime import datetime, timedelta

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from models.credits import CreditAccount
from models.generation import FINAL_STATUSES, Generation, GenerationOutput
from realtime import channels
from realtime.mailbox import Message
from services.credits import Balance
from services.generations import StoredOutput, snapshot, stored_output

# Ids per query (a process may follow thousands of channels).
CHUNK = 500
# Generations that ended this long before the loss was noticed are re-read too: the loss is
# noticed a little after it happens, and the clock that stamped `completed_at` (another
# process's) may differ a little from this one's.
MARGIN = timedelta(seconds=30)
_FINAL = [status.value for status in FINAL_STATUSES]


async def current_states(names: Collection[str], lost_at: datetime) -> list[tuple[str, Message]]:
    """(channel, message) for the current state of every followed channel among `names`."""
    followed: dict[str, list[uuid.UUID]] = defaultdict(list)
    for name in names:
        state = channels.of_state(name)
        if state is not None:
            followed[state[0]].append(state[1])
    found: list[tuple[str, Message]] = []
    for ids in _chunks(followed[channels.GENERATION]):
        for generation, message in await _snapshots(Generation.filter(id__in=ids)):
            found.append((channels.generation(generation.id), message))
    for users in _chunks(followed[channels.USER_GENERATIONS]):
        changed = Q(status__not_in=_FINAL) | Q(completed_at__gte=lost_at - MARGIN)
        query = Generation.filter(Q(user_id__in=users) & changed)
        for generation, message in await _snapshots(query):
            found.append((channels.user_generations(generation.user_id), message))
    for users in _chunks(followed[channels.USER_CREDITS]):
        for account in await CreditAccount.filter(user_id__in=users):
            # As credits.get_balance reads it: the balance and its version from one row.
            balance = Balance(account.balance - account.reserved, account.reserved, account.version)
            found.append((channels.user_credits(account.user_id), balance.to_message()))
    return found


def _chunks(ids: list[uuid.UUID]) -> Iterator[list[uuid.UUID]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


async def _snapshots(query: QuerySet[Generation]) -> list[tuple[Generation, Message]]:
    """Each generation of `query` with its message (the state and the outputs it has)."""
    rows = await query
    outputs: dict[uuid.UUID, list[StoredOutput]] = defaultdict(list)
    if rows:
        ids = [row.id for row in rows]
        for output in await GenerationOutput.filter(generation_id__in=ids).order_by("index"):
            outputs[output.generation_id].append(stored_output(output))
    return [(row, snapshot(row, outputs[row.id])) for row in rows]
