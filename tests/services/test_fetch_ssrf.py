"""SSRF: what Kiln fetches (input images, provider outputs) can never reach private, loopback
or link-local addresses: not by literal address, not through a public-looking hostname that
resolves to one, and not through a redirect to one."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services import fetch as fetch_module
from services.fetch import FetchRefused, check_url, fetch
from tests.support.fake_server import serve

IMAGES = frozenset({"image/png"})
LOCAL = frozenset({"127.0.0.1"})
PRIVATE_TARGETS = [
    "http://127.0.0.1/x.png",
    "http://10.20.30.40/x.png",
    "http://169.254.169.254/latest/meta-data/iam/",
    "http://[::1]/x.png",
    "http://[fe80::1]/x.png",
    "http://172.16.0.1/x.png",
    "http://100.64.0.1/x.png",  # carrier-grade NAT
    "http://2130706433/x.png",  # 127.0.0.1 as one decimal number
    "http://0x7f.1/x.png",
]


@pytest.fixture
def resolves_to(monkeypatch):
    """Make chosen hostnames resolve to chosen addresses (as a hostile DNS answer would)."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host in answers:
            family = socket.AF_INET6
            return [
                (family if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return answers


@pytest.mark.parametrize("url", PRIVATE_TARGETS)
async def test_private_literal_addresses_are_refused(url):
    with pytest.raises(FetchRefused):
        await check_url(url)


@pytest.mark.parametrize(
    "addresses",
    [["10.0.0.8"], ["169.254.169.254"], ["::1"], ["127.0.0.1"], ["93.184.215.14", "192.168.1.1"]],
)
async def test_a_hostname_resolving_to_a_private_address_is_refused(resolves_to, addresses):
    resolves_to["images.attacker.example"] = addresses
    with pytest.raises(FetchRefused, match="non-public"):
        await check_url("https://images.attacker.example/cat.png")


async def test_a_hostname_resolving_to_public_addresses_passes(resolves_to):
    resolves_to["images.example"] = ["93.184.215.14"]
    await check_url("https://images.example/cat.png")


async def hop(request: Request) -> Response:
    return RedirectResponse(request.query_params["to"])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve(Starlette(routes=[Route("/hop", hop)])) as url:
        yield url


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8000/admin",
        "http://10.1.1.1/",
        "http://internal.attacker.example/secret",  # a name that resolves to a private address
    ],
)
async def test_a_redirect_to_a_private_address_is_refused(server, resolves_to, target):
    resolves_to["internal.attacker.example"] = ["10.9.9.9"]
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchRefused, match="non-public"):
            await fetch(
                client,
                f"{server}/hop?to={target}",
                max_bytes=1000,
                allowed_types=IMAGES,
                allow_hosts=LOCAL,  # the test server itself is allowed; the hop is not
            )


def test_fetch_resolves_through_the_event_loop_resolver():
    """check_url asks the loop's getaddrinfo, which is socket.getaddrinfo: the tests above
    exercise the real resolution path, not a copy of it."""
    assert "getaddrinfo" in fetch_module.check_url.__code__.co_names
