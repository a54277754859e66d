"""How long to wait before trying a lost connection again: exponential from `first`, capped at
`cap`, and jittered (a random half to whole of the step), so the API processes that lost
Redis together do not all come back in the same instant, and none waits long once it is up."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first: float = 0.1
    cap: float = 5.0

    def delay(self, failures: int) -> float:
        """The wait after `failures` failures in a row (1 for the first)."""
        step = min(self.cap, self.first * 2 ** min(max(failures - 1, 0), 30))
        return random.uniform(step / 2, step)
