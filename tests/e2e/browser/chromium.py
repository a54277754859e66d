"""Real Chromium for the browser tests: Debian's package driven by Playwright (never a
browser Playwright downloads), and browser contexts that can reach only the origins a test
names: every other request is blocked and recorded, so a test can prove that nothing left
the machine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Route, WebSocket

CHROMIUM = Path(os.environ.get("KILN_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # No traffic of Chromium's own (updates, safe browsing, sync, field trials).
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
]
# Generous: the machine is shared; every wait is for a visible state, never a fixed sleep.
TIMEOUT_MS = 60_000


def need_chromium() -> None:
    """Under CI a missing browser fails the run (.ci/run installs it); elsewhere the browser
    tests skip."""
    if CHROMIUM.exists():
        return
    message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; CI=true: a missing browser fails the run", pytrace=False)
    pytest.skip(message)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Traffic:
    """What a context's pages asked for: requests to any other origin were blocked."""

    allowed: set[str]
    blocked: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)

    def allows(self, url: str) -> bool:
        return origin(url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)) in (
            self.allowed
        )

    async def route(self, route: Route) -> None:
        if self.allows(route.request.url):
            await route.continue_()
        else:
            self.blocked.append(route.request.url)
            await route.abort("blockedbyclient")

    def socket_opened(self, socket: WebSocket) -> None:
        self.sockets.append(socket.url)

    @property
    def foreign_sockets(self) -> list[str]:
        return [url for url in self.sockets if not self.allows(url)]


async def offline_context(browser: Browser, *origins: str) -> tuple[BrowserContext, Traffic]:
    """A fresh context (empty storage) whose pages reach only `origins`."""
    traffic = Traffic({origin(o) for o in origins})
    context = await browser.new_context(service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    await context.route("**/*", traffic.route)
    context.on("page", lambda page: page.on("websocket", traffic.socket_opened))
    return context, traffic
