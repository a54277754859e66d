"""Running operations on Kiln's schema in-process: request contexts, and a world of an owner,
another user and an admin with resources that belong to the owner."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import strawberry
from starlette.requests import Request

from models.error_event import ErrorCategory, Severity
from models.user import Role, User
from schema.build import build_schema
from schema.context import Context
from schema.loaders import Loaders
from services import api_keys, auth, generations, notifications
from services.catalogue import load_catalogue
from services.error_events import Occurrence, record
from services.generations import NewGeneration
from settings import get_settings
from tests.support.providers import provider_deps

PASSWORD = "correct horse battery"


class _ModeSchema:
    """Kiln's schema as the running test's fast-path mode builds it (FAST_PATH_ENABLED, which
    tests/conftest.py sets per test), each mode's built once."""

    def __init__(self) -> None:
        self._built: dict[bool, strawberry.Schema] = {}

    def __getattr__(self, name: str) -> Any:
        enabled = get_settings().fast_path_enabled
        schema = self._built.get(enabled)
        if schema is None:
            schema = self._built[enabled] = build_schema()
        return getattr(schema, name)


SCHEMA = cast(strawberry.Schema, _ModeSchema())


def request_context(settings, token: str | None = None, **extra: Any) -> Context:
    """An HTTP request's context, authenticated with `token` (anonymous without one)."""
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/graphql",
            "scheme": "http",
            "server": ("kiln.test", 80),
            "client": ("203.0.113.9", 50000),
            "query_string": b"",
            "headers": headers,
        }
    )
    return Context(
        request=request,
        response=None,
        settings=settings,
        catalogue=load_catalogue(),
        providers=provider_deps(),
        request_id="test",
        loaders=Loaders(),
        **extra,
    )


@dataclass
class World:
    settings: Any
    owner: User
    other: User
    admin: User
    generation_id: str
    key_id: str
    event_id: str
    tokens: dict[str, str | None] = field(default_factory=dict)

    def secrets(self) -> list[str]:
        """What only the owner (and admins) may ever see."""
        return [self.generation_id, self.key_id, self.owner.email, "owner-only notification"]


async def make_world(backend) -> World:
    settings = backend.settings
    owner, other, admin = [
        await auth.register(
            f"{who}-{uuid.uuid4().hex[:10]}@example.com", PASSWORD, settings, role=role
        )
        for who, role in (("owner", Role.USER), ("other", Role.USER), ("admin", Role.ADMIN))
    ]
    generation = await generations.create_generation(
        owner, NewGeneration(prompt="owner's secret prompt"), load_catalogue()
    )
    key, _ = await api_keys.create(owner, "owner's key", settings)
    await notifications.notify(
        owner.id, kind="TEST", severity=Severity.INFO, title="owner-only notification", message="m"
    )
    message = f"matrix event {uuid.uuid4().hex}"
    await record(Occurrence(Severity.ERROR, ErrorCategory.API, message, "MATRIX"))
    from models.error_event import ErrorEvent

    event = await ErrorEvent.filter(error_code="MATRIX").order_by("-last_seen").first()
    assert event is not None
    world = World(settings, owner, other, admin, str(generation.id), str(key.id), str(event.id))
    world.tokens = {
        "anonymous": None,
        "other": auth.issue_token(other, settings),
        "admin": auth.issue_token(admin, settings),
    }
    return world
