from __future__ import annotations

import pytest

from tests.support.schema import World, make_world


@pytest.fixture(scope="module")
async def world(backend) -> World:
    """An owner (with a generation, an API key and a notification), another user and an admin,
    once per module and backend (argon2 makes accounts slow to create)."""
    return await make_world(backend)
