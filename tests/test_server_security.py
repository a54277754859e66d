"""The server refuses to start in production with development secrets, and can turn GraphiQL
off."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest

import runtime
from server import create_app
from settings import Settings

STRONG = "s" * 48


@pytest.mark.parametrize(
    "overrides,named",
    [
        ({}, "JWT_SECRET"),
        ({"jwt_secret": STRONG}, "API_KEY_PEPPER"),
        ({"api_key_pepper": STRONG}, "JWT_SECRET"),
        ({"jwt_secret": "short", "api_key_pepper": STRONG}, "JWT_SECRET"),
    ],
)
def test_production_refuses_default_or_weak_secrets(tmp_path, overrides, named):
    settings = Settings(environment="production", data_dir=tmp_path, **overrides)
    with pytest.raises(SystemExit, match=named):
        create_app(settings)


def test_production_starts_with_real_secrets(tmp_path):
    create_app(
        Settings(
            environment="production", data_dir=tmp_path, jwt_secret=STRONG, api_key_pepper=STRONG
        )
    )


@pytest.mark.parametrize("enabled,status", [(True, 200), (False, 404)])
async def test_graphiql_can_be_switched_off(tmp_path, monkeypatch, enabled, status):
    # The page needs no database; the request context still looks the runtime up.
    monkeypatch.setattr(
        runtime, "_current", SimpleNamespace(catalogue=None, providers=None, redis=None)
    )
    app = create_app(Settings(data_dir=tmp_path, graphiql_enabled=enabled))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kiln.test") as client:
        response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == status
    if enabled:
        assert "graphiql" in response.text.lower()
