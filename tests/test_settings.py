"""How settings become connection parameters."""

from __future__ import annotations

import pytest

from settings import Settings


@pytest.mark.parametrize(
    ("url", "size", "effective"),
    [
        ("postgresql://k@db/kiln", 16, "postgres://k@db/kiln?maxsize=16"),
        ("postgres://k@db/kiln?ssl=true", 4, "postgres://k@db/kiln?ssl=true&maxsize=4"),
        ("postgres://k@db/kiln?maxsize=3", 16, "postgres://k@db/kiln?maxsize=3"),  # URL wins
    ],
)
def test_each_process_keeps_a_pool_of_the_configured_size(url, size, effective):
    settings = Settings(database_url=url, database_pool_size=size)
    assert settings.effective_database_url == effective
