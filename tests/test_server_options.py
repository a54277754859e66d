"""`uv run server.py` and the README's production command run uvicorn the same way: Kiln's HTTP
protocol, no proxy headers believed by uvicorn, WebSocket messages capped like bodies."""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.importer import import_from_string
from uvicorn.main import main as uvicorn_command

import server
from settings import Settings
from tests.support.readme import production_uvicorn_args
from web.http_protocol import KilnHttpProtocol


def test_server_py_runs_uvicorn_with_kilns_options(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path)
    ran: dict[str, Any] = {}
    monkeypatch.setattr(server, "get_settings", lambda: settings)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options))
    server.main()
    assert ran["proxy_headers"] is False
    assert ran["ws_max_size"] == settings.max_body_bytes == 1024 * 1024
    assert ran["ws_per_message_deflate"] is False
    assert issubclass(ran["http"], KilnHttpProtocol)
    assert ran["http"].rules.timeout == settings.header_timeout_seconds


def test_the_readme_production_command_gives_the_same_options(tmp_path):
    params = uvicorn_command.make_context("uvicorn", production_uvicorn_args()).params
    options = server.uvicorn_options(Settings(data_dir=tmp_path))
    assert params["app"] == "server:create_app" and params["factory"]
    assert import_from_string(params["http"]) is KilnHttpProtocol
    assert issubclass(options["http"], KilnHttpProtocol)
    assert params["proxy_headers"] is options["proxy_headers"] is False
    assert params["forwarded_allow_ips"] is None
    assert params["ws_max_size"] == options["ws_max_size"]
    assert params["ws_per_message_deflate"] is options["ws_per_message_deflate"] is False
