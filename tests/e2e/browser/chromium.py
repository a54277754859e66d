"""Real Chromium for the browser tests: Debian's package driven by Playwright (never a
browser Playwright downloads), and browser contexts that reach nothing beyond this machine
and record every request, so a test can prove that a page asked only for what it should."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, WebSocket

from tests.support.fake_server import free_port

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
    """Every request and socket a context's pages opened, by URL."""

    allowed: set[str]
    requests: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)

    def allows(self, url: str) -> bool:
        http = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        return origin(http) in self.allowed or url.startswith("data:")

    @property
    def foreign(self) -> list[str]:
        """Requests and sockets to anything but the allowed origins (all of them failed)."""
        return [url for url in [*self.requests, *self.sockets] if not self.allows(url)]


async def offline_context(browser: Browser, *origins: str) -> tuple[BrowserContext, Traffic]:
    """A fresh context (empty storage) whose pages reach only this machine: everything else
    goes to a proxy that is not there, so it fails without leaving the machine, and every
    request is recorded. (Not Playwright's routing: while it intercepts, Playwright answers
    CORS preflights itself, and Kiln's CORS would go untested.)"""
    traffic = Traffic({origin(o) for o in origins})
    context = await browser.new_context(
        service_workers="block",
        proxy={"server": f"http://127.0.0.1:{free_port()}", "bypass": "127.0.0.1,localhost"},
    )
    context.set_default_timeout(TIMEOUT_MS)
    context.on("request", lambda request: traffic.requests.append(request.url))
    context.on("page", lambda page: page.on("websocket", _record_socket(traffic)))
    return context, traffic


def _record_socket(traffic: Traffic) -> Callable[[WebSocket], None]:
    return lambda socket: traffic.sockets.append(socket.url)
