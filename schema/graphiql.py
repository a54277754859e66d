"""Kiln's GraphiQL page (schema/graphiql.html) and the folder of the files it loads.

Strawberry's own page loads GraphiQL from a CDN (so it stays on "Loading..." offline) and
opens subscription sockets without a connection_init payload, where Kiln's sockets
authenticate. Kiln's page loads the same versions from /graphql/assets/ (built from npm by
web/graphiql/build.mjs and committed), and sends the Headers tab's Authorization when a
subscription opens its socket."""

from __future__ import annotations

from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Served at GRAPHIQL_ASSETS_PATH; committed, rebuilt with `npm ci && npm run build` there.
GRAPHIQL_ASSETS_DIR = ROOT / "web" / "graphiql" / "assets"
GRAPHIQL_ASSETS_PATH = "/graphql/assets"
_PAGE = Path(__file__).with_name("graphiql.html")


@cache
def graphiql_html() -> str:
    return _PAGE.read_text(encoding="utf-8")
