from __future__ import annotations

import pytest

from tests.support import fast_path as fast_path_modes
from tests.support.schema import World, make_world


@pytest.fixture(scope="module")
async def world(backend) -> World:
    """An owner (with a generation, an API key and a notification), another user and an admin,
    once per module and backend (argon2 makes accounts slow to create)."""
    return await make_world(backend)


@pytest.fixture(params=fast_path_modes.both_ways(), ids=lambda mode: f"fast-path-{mode}")
def fast_path(request: pytest.FixtureRequest) -> bool:
    """Every schema test runs with the fast path on and off (tests/support/fast_path.py)."""
    return fast_path_modes.MODES[request.param]
