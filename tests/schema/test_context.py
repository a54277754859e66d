"""The per-request Context: where the client reached us, read once."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.websockets import WebSocket

from schema.context import Context
from schema.loaders import Loaders
from settings import Settings


def context_for(scope: dict[str, Any]) -> Context:
    return Context(
        request=Request(scope) if scope["type"] == "http" else WebSocket(scope, _never, _never),
        response=None,
        settings=Settings(),
        catalogue=None,  # type: ignore[arg-type]
        providers=None,  # type: ignore[arg-type]
        request_id="req",
        loaders=Loaders(),
    )


async def _never(*args: Any) -> Any:
    raise AssertionError("the context reads no messages")


def scope(kind: str, scheme: str) -> dict[str, Any]:
    return {
        "type": kind,
        "scheme": scheme,
        "server": ("kiln.test", 8443),
        "path": "/graphql",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"api.kiln.test")],
    }


def test_base_url_is_the_http_address_the_client_used_read_once():
    https = context_for(scope("http", "https"))
    assert https.base_url == "https://api.kiln.test"
    https.request.scope["headers"] = [(b"host", b"elsewhere.test")]
    assert https.base_url == "https://api.kiln.test"  # kept for the whole request
    assert context_for(scope("websocket", "wss")).base_url == "https://api.kiln.test"
    assert context_for(scope("websocket", "ws")).base_url == "http://api.kiln.test"
