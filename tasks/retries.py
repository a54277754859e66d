"""When Dramatiq tries a failed message again. A step that failed because the database,
Redis or the broker was unreachable (services.outages tells an outage from a bug) is tried
again with a short backoff for as long as an outage of a few minutes lasts, instead of
being dropped after five tries: the work resumes when the dependency is back (the lease lets
the retry take the step over). Any other failure is a bug: five tries, as before."""

from __future__ import annotations

from typing import Any

from services import outages

# Backoff between tries, in milliseconds: doubled from the first, capped at the second.
MIN_BACKOFF_MS = 500
MAX_BACKOFF_MS = 5_000
# Tries of a message that failed on an outage (with the cap, about three minutes of them).
OUTAGE_RETRIES = 40
# Tries of a message that failed on anything else.
MAX_RETRIES = 5


def retry_when(retries: int, exception: BaseException) -> bool:
    """Dramatiq's `retry_when`: whether the message that raised `exception` after `retries`
    earlier retries is tried again."""
    if outages.as_unavailable(exception) is not None:
        return retries < OUTAGE_RETRIES
    return retries < MAX_RETRIES


# The options every actor of the generation path is declared with.
RETRY_OPTIONS: dict[str, Any] = {
    "retry_when": retry_when,
    "min_backoff": MIN_BACKOFF_MS,
    "max_backoff": MAX_BACKOFF_MS,
}
