"""Fixtures of the browser tests: one Chromium for the session, and a Kiln whose
CORS_ALLOW_ORIGINS lists a page served from another local port (a browser app on another
origin), with a second page server whose origin is not listed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

from schema.graphiql import GRAPHIQL_ASSETS_DIR
from tests.e2e.browser.chromium import CHROMIUM, CHROMIUM_ARGS, need_chromium
from tests.e2e.stack import Stack, StackError, start_embedded
from tests.support.fake_server import serve

PAGE_DIR = Path(__file__).with_name("page")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    need_chromium()
    async with async_playwright() as playwright:
        # Debian's Chromium, not one Playwright would download (nothing can be downloaded).
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


def page_app() -> Starlette:
    """A browser app's static files: its page, and graphql-ws from Kiln's committed
    GraphiQL assets (the npm build, no CDN)."""
    return Starlette(
        routes=[
            Route("/", lambda _: FileResponse(PAGE_DIR / "index.html")),
            Route(
                "/graphql-ws.min.js",
                lambda _: FileResponse(GRAPHIQL_ASSETS_DIR / "graphql-ws.min.js"),
            ),
        ]
    )


@dataclass
class CrossOrigin:
    kiln: Stack
    listed_page: str  # http://127.0.0.1:PORT, in CORS_ALLOW_ORIGINS
    unlisted_page: str  # another port, not listed


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[str, str]]:
    with ExitStack() as servers:
        yield servers.enter_context(serve(page_app())), servers.enter_context(serve(page_app()))


@pytest.fixture(scope="module")
async def cross_origin(
    pages: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CrossOrigin]:
    listed, unlisted = pages
    data_dir = tmp_path_factory.mktemp("kiln-cross-origin")
    try:
        kiln = await asyncio.to_thread(
            start_embedded, data_dir, {"CORS_ALLOW_ORIGINS": f"https://app.example.com,{listed}"}
        )
    except StackError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield CrossOrigin(kiln, listed, unlisted)
    finally:
        await asyncio.to_thread(kiln.stop)
