"""A browser app on another origin: with its origin in CORS_ALLOW_ORIGINS it calls Kiln
over HTTP (with the headers GraphQL clients send) and subscribes over a WebSocket; from an
origin not listed the socket is refused. Clients that send no Origin (not browsers) still
connect."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import Browser, Page
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.e2e import api
from tests.e2e.browser.chromium import offline_context
from tests.e2e.browser.conftest import CrossOrigin
from tests.e2e.client import SUBPROTOCOL, KilnClient

pytestmark = pytest.mark.e2e

REJECTED_LOG = "Rejected WebSocket connection from origin"
CLIENT_HEADERS = (
    "authorization, content-type, x-request-id, apollographql-client-name, "
    "apollographql-client-version, traceparent"
)


async def _status_becomes(page: Page, *states: str) -> str:
    await page.wait_for_function(
        """(states) => states.some(
          (state) => document.getElementById("status").textContent.startsWith(state))""",
        arg=list(states),
    )
    return await page.locator("#status").inner_text()


async def test_a_page_on_a_listed_origin_subscribes_to_its_generation(
    cross_origin: CrossOrigin, browser: Browser
) -> None:
    kiln = cross_origin.kiln.base_url
    context, traffic = await offline_context(browser, kiln, cross_origin.listed_page)
    try:
        page = await context.new_page()
        await page.goto(f"{cross_origin.listed_page}/?api={kiln}")
        status = await _status_becomes(page, "complete", "error", "socket")
        updates = [
            json.loads(item)["generationUpdated"]
            for item in await page.locator("#updates li").evaluate_all(
                "(items) => items.map((item) => item.dataset.json)"
            )
        ]
    finally:
        await context.close()

    assert status == "complete", (status, updates)
    assert updates[-1]["status"] == "COMPLETED", updates
    assert updates[-1]["outputs"][0]["url"].startswith(f"{kiln}/media/")
    versions = [update["version"] for update in updates]
    assert versions == sorted(set(versions)), versions
    assert traffic.foreign == []
    assert traffic.sockets == [cross_origin.kiln.ws_url]
    # The browser asked Kiln first (its headers are not CORS-safelisted), and Kiln said yes.
    assert '"OPTIONS /graphql HTTP/1.1\\" 200' in cross_origin.kiln.process("server").output()


async def test_a_page_on_an_unlisted_origin_cannot_open_a_socket(
    cross_origin: CrossOrigin, browser: Browser
) -> None:
    kiln = cross_origin.kiln
    client = KilnClient(kiln.base_url)
    try:
        account = await api.register(client)
        generation = await api.create(client, account)
    finally:
        await client.aclose()
    context, traffic = await offline_context(browser, kiln.base_url, cross_origin.unlisted_page)
    try:
        page = await context.new_page()
        await page.goto(
            f"{cross_origin.unlisted_page}/?api={kiln.base_url}"
            f"&token={account.token}&id={generation['id']}"
        )
        status = await _status_becomes(page, "complete", "error", "socket")
        received = await page.locator("#updates li").count()
    finally:
        await context.close()

    assert status.startswith("socket"), status
    assert received == 0
    assert traffic.foreign == []
    assert traffic.sockets == [kiln.ws_url]
    assert f"{REJECTED_LOG} '{cross_origin.unlisted_page}'" in kiln.process("server").output()


async def test_socket_handshakes_follow_the_cors_origins(cross_origin: CrossOrigin) -> None:
    url = cross_origin.kiln.ws_url
    for allowed in (cross_origin.listed_page, None):
        headers = {"Origin": allowed} if allowed else {}
        async with connect(
            url, subprotocols=[SUBPROTOCOL], origin=None, additional_headers=headers
        ) as socket:
            assert socket.subprotocol == SUBPROTOCOL
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            url, subprotocols=[SUBPROTOCOL], additional_headers={"Origin": "https://evil.example"}
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_a_preflight_allows_the_headers_graphql_clients_send(
    cross_origin: CrossOrigin,
) -> None:
    client = KilnClient(cross_origin.kiln.base_url)
    try:
        response = await client.http.options(
            "/graphql",
            headers={
                "Origin": cross_origin.listed_page,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": CLIENT_HEADERS,
            },
        )
    finally:
        await client.aclose()
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == cross_origin.listed_page
    allowed = response.headers["access-control-allow-headers"].lower().split(",")
    assert {h.strip() for h in CLIENT_HEADERS.split(",")} <= {h.strip() for h in allowed}
