from __future__ import annotations

from typing import Any

import pytest

from services import auth, generations
from services.catalogue import load_catalogue
from services.generations import NewGeneration, StoredOutput
from services.generations.failures import FailureCode


@pytest.fixture
def fast_path() -> bool:
    """The fast path's own tests run it, whatever KILN_TEST_FAST_PATH says."""
    return True


@pytest.fixture
async def owner(make_user: Any, backend: Any) -> str:
    """A user with three completed generations (one with two outputs) and a failed one."""
    user = await make_user(credits=50)
    catalogue = load_catalogue()
    for index in range(3):
        generation = await generations.create_generation(
            user, NewGeneration(prompt=f"p{index}", num_outputs=2), catalogue
        )
        await generations.start(generation.id)
        outputs = [
            StoredOutput(i, f"{user.id}/{generation.id}/{i}.png", "image/png", 10 + i, 64, 64)
            for i in range(1 if index else 2)
        ]
        await generations.complete(generation.id, outputs, "local")
    failed = await generations.create_generation(user, NewGeneration(prompt="f"), catalogue)
    await generations.start(failed.id)
    await generations.fail(failed.id, FailureCode.PROVIDER_ERROR, "it broke")
    return auth.issue_token(user, backend.settings)
