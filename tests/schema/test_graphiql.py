"""Kiln's GraphiQL page loads only files Kiln serves itself, each one committed with its
package's licence; without GraphiQL they are not served. (tests/e2e/browser drives the page
in Chromium.)"""

from __future__ import annotations

import re
from types import SimpleNamespace

import httpx
import pytest

import runtime
from schema.graphiql import GRAPHIQL_ASSETS_DIR, GRAPHIQL_ASSETS_PATH, graphiql_html
from server import create_app
from settings import Settings

_LOADED = re.compile(r'<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"')


def _loaded() -> list[str]:
    return _LOADED.findall(graphiql_html())


def _sources() -> list[list[str]]:
    """web/graphiql/assets/SOURCES.tsv: file, package@version/path, how, integrity."""
    lines = (GRAPHIQL_ASSETS_DIR / "SOURCES.tsv").read_text().splitlines()[1:]
    return [line.split("\t") for line in lines if line]


def test_the_page_loads_only_files_kiln_serves() -> None:
    loaded = _loaded()
    assert loaded, "the page loads no script or style?"
    for url in loaded:
        if url.startswith("data:"):
            continue
        # Relative to /graphql, so the page also works under a path prefix.
        assert url.startswith(GRAPHIQL_ASSETS_PATH.lstrip("/") + "/"), url
        assert (GRAPHIQL_ASSETS_DIR / url.rsplit("/", 1)[1]).is_file(), url
    assert "unpkg.com" not in graphiql_html()
    assert "://" not in " ".join(loaded)


def test_every_served_file_has_its_source_and_licence() -> None:
    sources = _sources()
    assert {row[0] for row in sources} == {
        path.name for path in GRAPHIQL_ASSETS_DIR.iterdir() if path.suffix in (".js", ".css")
    }
    licences = {path.name for path in (GRAPHIQL_ASSETS_DIR / "licenses").iterdir()}
    for _, source, _, _ in sources:
        package = source.rsplit("@", 1)[0]
        assert f"{package.lstrip('@').replace('/', '-')}.LICENSE" in licences, source


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_assets_are_served_with_graphiql(tmp_path, monkeypatch, enabled) -> None:
    monkeypatch.setattr(
        runtime, "_current", SimpleNamespace(catalogue=None, providers=None, redis=None)
    )
    app = create_app(Settings(data_dir=tmp_path, graphiql_enabled=enabled))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kiln.test") as client:
        page = await client.get("/graphql", headers={"Accept": "text/html"})
        assets = [url for url in _loaded() if not url.startswith("data:")]
        responses = {url: await client.get(f"/{url}") for url in assets}
    if not enabled:
        assert page.status_code == 404
        assert {r.status_code for r in responses.values()} == {404}
        return
    assert page.text == graphiql_html()
    for url, response in responses.items():
        assert response.status_code == 200, url
        kind = "text/css" if url.endswith(".css") else "text/javascript"
        assert response.headers["content-type"].startswith(kind), url
