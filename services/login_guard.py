"""Login protection: after `login_max_failures` failed logins for one email within the window,
every further attempt is refused (RATE_LIMITED) whatever the password, until the window
closes. Counted in services.rate_limits' shared counters, so all API processes agree.

Each attempt is counted *before* the password is checked and the count is cleared on success:
concurrent guesses cannot slip past the limit between a check and an increment."""

from __future__ import annotations

import hashlib

from services.errors import RateLimited
from services.rate_limits import Counters, retry_after
from settings import Settings


def _key(email: str) -> str:
    # Hashed: Redis never holds the addresses people type.
    return "login:" + hashlib.sha256(email.encode()).hexdigest()[:32]


async def attempt(counters: Counters, email: str, settings: Settings) -> None:
    """Call before checking the password; raises RateLimited once the email is locked."""
    window = await counters.hit(_key(email), settings.login_failure_window_seconds)
    if window.count > settings.login_max_failures:
        raise RateLimited(
            retry_after(window), "Too many failed logins for this email; try again later."
        )


async def succeeded(counters: Counters, email: str) -> None:
    await counters.clear(_key(email))
