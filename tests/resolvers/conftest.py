from __future__ import annotations

import pytest

from tests.support import fast_path as fast_path_modes


@pytest.fixture(params=fast_path_modes.both_ways(), ids=lambda mode: f"fast-path-{mode}")
def fast_path(request: pytest.FixtureRequest) -> bool:
    """Every resolver test runs with the fast path on and off (tests/support/fast_path.py)."""
    return fast_path_modes.MODES[request.param]
