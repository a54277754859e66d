"""GET /graphql/schema.graphql: the SDL for code generators, the same text `manage.py schema`
prints; only while introspection is enabled (it tells no more than introspection would)."""

from __future__ import annotations

import httpx
from graphql import build_schema as parse_sdl

from schema.build import build_schema
from server import create_app
from settings import Settings


def client(settings: Settings) -> httpx.AsyncClient:
    """The real app, without its lifespan: the schema file needs no database."""
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://kiln.test")


async def test_the_schema_file_is_the_sdl(tmp_path):
    settings = Settings(database_url="", redis_url="", data_dir=tmp_path)
    async with client(settings) as http:
        response = await http.get("/graphql/schema.graphql")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == build_schema(settings).as_str() + "\n"
    assert "generations" in parse_sdl(response.text).query_type.fields  # type: ignore[union-attr]


async def test_without_introspection_there_is_no_schema_file(tmp_path):
    settings = Settings(
        database_url="", redis_url="", data_dir=tmp_path, introspection_enabled=False
    )
    async with client(settings) as http:
        response = await http.get("/graphql/schema.graphql")
    assert response.status_code == 404
    assert "type Query" not in response.text
