"""What the server refuses to start with, and what production-like settings close by default:
no public or missing secrets, /metrics behind its token, GraphiQL off unless turned on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import jwt
import pytest

import runtime
from server import create_app
from services import auth
from services.errors import Unauthenticated
from settings import Settings

STRONG = "s" * 48
# The secrets every Kiln before this change signed tokens and hashed keys with when none was
# set: public, in the source and README, so they must never be accepted again.
PUBLIC_JWT_SECRET = "kiln-dev-secret-change-me-in-production"
PUBLIC_API_KEY_PEPPER = "kiln-dev-api-key-pepper-change-me-in-production"
POSTGRES = "postgres://kiln@db.invalid/kiln"
REDIS = "redis://cache.invalid:6379/0"


@pytest.mark.parametrize(
    "overrides,named",
    [
        ({}, "JWT_SECRET"),
        ({"jwt_secret": STRONG}, "API_KEY_PEPPER"),
        ({"api_key_pepper": STRONG}, "JWT_SECRET"),
        ({"jwt_secret": "short", "api_key_pepper": STRONG}, "JWT_SECRET"),
        ({"jwt_secret": PUBLIC_JWT_SECRET, "api_key_pepper": STRONG}, "JWT_SECRET"),
        ({"jwt_secret": STRONG, "api_key_pepper": PUBLIC_API_KEY_PEPPER}, "API_KEY_PEPPER"),
    ],
)
def test_production_refuses_default_or_weak_secrets(tmp_path, overrides, named):
    settings = Settings(environment="production", data_dir=tmp_path, **overrides)
    with pytest.raises(SystemExit, match=named):
        create_app(settings)


@pytest.mark.parametrize(
    "shared",
    [
        {"database_url": POSTGRES},
        {"redis_url": REDIS},
        {"database_url": POSTGRES, "redis_url": REDIS},
    ],
)
def test_a_database_or_redis_url_is_production_whatever_environment_says(tmp_path, shared):
    """The deployment of the issue: DATABASE_URL and REDIS_URL, no ENVIRONMENT=production."""
    settings = Settings(data_dir=tmp_path, environment="development", **shared)
    with pytest.raises(SystemExit, match="JWT_SECRET"):
        create_app(settings)
    create_app(settings.model_copy(update={"jwt_secret": STRONG, "api_key_pepper": STRONG}))


def test_the_public_secrets_are_refused_even_embedded(tmp_path):
    with pytest.raises(SystemExit, match="JWT_SECRET"):
        create_app(Settings(data_dir=tmp_path, jwt_secret=PUBLIC_JWT_SECRET))
    with pytest.raises(SystemExit, match="API_KEY_PEPPER"):
        create_app(Settings(data_dir=tmp_path, api_key_pepper=PUBLIC_API_KEY_PEPPER))


def test_production_starts_with_real_secrets(tmp_path):
    create_app(
        Settings(
            environment="production", data_dir=tmp_path, jwt_secret=STRONG, api_key_pepper=STRONG
        )
    )


async def test_a_token_signed_with_the_public_secret_logs_in_as_nobody(backend, make_user):
    """User ids are in every output URL: with the public secret anyone could sign in as anyone."""
    user = await make_user()
    now = datetime.now(UTC)
    forged = jwt.encode(
        {"sub": str(user.id), "role": "ADMIN", "iat": now, "exp": now + timedelta(hours=1)},
        PUBLIC_JWT_SECRET,
        algorithm="HS256",
    )
    with pytest.raises(Unauthenticated):
        await auth.authenticate(f"Bearer {forged}", backend.settings)
    # The process's own secret still works.
    genuine = auth.issue_token(user, backend.settings)
    signed_in = await auth.authenticate(f"Bearer {genuine}", backend.settings)
    assert signed_in is not None and signed_in.id == user.id


def _client(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://kiln.test")


@pytest.fixture
def no_runtime(monkeypatch):
    """The pages here need no database; the request context still looks the runtime up."""
    monkeypatch.setattr(
        runtime, "_current", SimpleNamespace(catalogue=None, providers=None, redis=None)
    )


PRODUCTION = {"database_url": POSTGRES, "jwt_secret": STRONG, "api_key_pepper": STRONG}


@pytest.mark.parametrize(
    "given,status",
    [
        ({}, 200),  # embedded: GraphiQL on unless switched off
        ({"graphiql_enabled": False}, 404),
        (PRODUCTION, 404),  # production-like: off unless switched on
        ({**PRODUCTION, "graphiql_enabled": True}, 200),
    ],
)
async def test_graphiql_is_on_embedded_and_off_in_production_unless_told(
    tmp_path, no_runtime, given, status
):
    async with _client(Settings(data_dir=tmp_path, **given)) as client:
        response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == status
    if status == 200:
        assert "graphiql" in response.text.lower()


@pytest.mark.parametrize(
    "given,authorization,status",
    [
        ({}, None, 200),  # embedded and no token: open, as before
        (PRODUCTION, None, 401),  # production-like, no token set: closed
        ({**PRODUCTION, "metrics_public": True}, None, 200),  # opened on purpose
        ({**PRODUCTION, "metrics_token": "m" * 40}, None, 401),
        ({**PRODUCTION, "metrics_token": "m" * 40}, "Bearer wrong", 401),
        ({**PRODUCTION, "metrics_token": "m" * 40}, "Bearer " + "m" * 40, 200),
    ],
)
async def test_metrics_need_their_token_in_production_unless_opened(
    tmp_path, no_runtime, given, authorization, status
):
    headers = {"Authorization": authorization} if authorization else {}
    async with _client(Settings(data_dir=tmp_path, **given)) as client:
        response = await client.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 200:
        assert "kiln_" in response.text
