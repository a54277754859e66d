"""GET /graphql/schema.graphql: the schema as SDL, for code generators (graphql-codegen and
the like read a URL ending in .graphql as SDL). The same text as `uv run manage.py schema`.
Served only while INTROSPECTION_ENABLED is true: it tells exactly what introspection would,
so switching introspection off hides it too (404)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from strawberry.schema import BaseSchema

from settings import Settings


def schema_file(schema: BaseSchema, settings: Settings) -> Callable[[Request], Awaitable[Response]]:
    sdl = schema.as_str() + "\n"  # printed once: the schema does not change while running

    async def endpoint(request: Request) -> Response:
        if not settings.introspection_enabled:
            return PlainTextResponse("Not Found", status_code=404)
        return PlainTextResponse(sdl)

    return endpoint
