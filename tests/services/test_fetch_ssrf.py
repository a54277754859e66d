"""SSRF: what Kiln fetches (input images, provider outputs) can never reach private, loopback
or link-local addresses: not by literal address (IPv6 forms that embed an IPv4 address
included), not through a public-looking hostname that resolves to one, not through a second
DNS answer (the connection goes to the address that was checked), and not through a redirect
to one."""

from __future__ import annotations

import asyncio
import errno
import io
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services import fetch as fetch_module
from services.fetch import FetchFailed, FetchRefused, check_url
from tests.support.fake_server import self_signed, serve
from tests.support.fetching import LOCAL, fetch_image

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


@dataclass
class Resolver:
    """Chosen hostnames resolve to chosen addresses, as a hostile DNS server answers:
    `answers[host]` every time, or `turns[host]` one answer per lookup (the last repeated)."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    turns: dict[str, list[list[str]]] = field(default_factory=dict)

    def lookup(self, host: str) -> list[str] | None:
        if host in self.turns:
            turns = self.turns[host]
            return turns.pop(0) if len(turns) > 1 else turns[0]
        return self.answers.get(host)


@pytest.fixture
def resolver(monkeypatch) -> Resolver:
    """Patches socket.getaddrinfo: both Kiln's lookup and any lookup httpx would make."""
    fake_dns = Resolver()
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        addresses = fake_dns.lookup(host.decode() if isinstance(host, bytes) else host)
        if addresses is None:
            return real(host, port, *args, **kwargs)
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake_dns


@pytest.fixture
def resolves_to(resolver) -> dict[str, list[str]]:
    return resolver.answers


@pytest.fixture
def rebinding(resolver) -> dict[str, list[list[str]]]:
    return resolver.turns


@dataclass
class Network:
    """The test's view of the network: `routes` sends a (public address, port) to a port of
    this machine (where a test server plays that public host); every other connection fails as
    unreachable, loopback included, so nothing leaves the machine and the inside of "our
    network" is never reached. `attempts`: every (address, port) a connection was opened to."""

    routes: dict[tuple[str, int], int] = field(default_factory=dict)
    attempts: list[tuple[str, int]] = field(default_factory=list)


@pytest.fixture
async def network(monkeypatch) -> Network:
    """Patches this test's event loop, where httpx opens its connections (anyio calls the
    loop's create_connection with the address it connects to)."""
    loop = asyncio.get_running_loop()
    real = loop.create_connection
    net = Network()

    async def create_connection(protocol_factory: Any, host: Any = None, port: Any = None, **kw):
        net.attempts.append((str(host), int(port)))
        routed = net.routes.get((str(host), int(port)))
        if routed is None:
            raise OSError(errno.ENETUNREACH, f"{host} is unreachable from the tests")
        return await real(protocol_factory, "127.0.0.1", routed, **kw)

    monkeypatch.setattr(loop, "create_connection", create_connection)
    return net


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
            await fetch_image(
                client,
                f"{server}/hop?to={target}",
                max_bytes=1000,
                allow_hosts=LOCAL,  # the test server itself is allowed; the hop is not
            )


def test_fetch_resolves_through_the_event_loop_resolver():
    """Kiln's lookup is the loop's getaddrinfo, which is socket.getaddrinfo: the tests above
    exercise the real resolution path, not a copy of it."""
    assert "getaddrinfo" in fetch_module.resolve.__code__.co_names


# IPv6 forms that carry an IPv4 address: IPv4-compatible (::a.b.c.d), IPv4-mapped,
# IPv4-translated, NAT64 (64:ff9b::/96), 6to4 (2002::/16, the address in bits 16-47) and
# Teredo (2001::/32: the server in bits 32-63, the client's address inverted in the last 32).
EMBEDDED_PRIVATE = [
    "::127.0.0.1",
    "::10.1.2.3",
    "::169.254.169.254",
    "::ffff:10.0.0.1",
    "::ffff:0:127.0.0.1",  # IPv4-translated (SIIT)
    "64:ff9b::127.0.0.1",
    "64:ff9b::10.0.0.1",
    "64:ff9b::169.254.169.254",
    "64:ff9b::192.168.1.1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "2001:0:808:808::80ff:fffe",  # Teredo: server 8.8.8.8, client 127.0.0.1
    "2001:0:a00:1::f7f7:f7f7",  # Teredo: server 10.0.0.1, client 8.8.8.8
    # The local-use translation prefix (RFC 8215) reaches only the operator's own network:
    # refused whatever it embeds.
    "64:ff9b:1::7f00:1",
    "64:ff9b:1::808:808",
]
EMBEDDED_PUBLIC = [
    "::8.8.8.8",
    "::ffff:8.8.8.8",
    "::ffff:0:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:808:808::f7f7:f7f7",  # Teredo: server and client 8.8.8.8
]


@pytest.mark.parametrize("address", EMBEDDED_PRIVATE)
async def test_ipv6_forms_of_private_ipv4_addresses_are_refused(resolves_to, address):
    with pytest.raises(FetchRefused, match="non-public"):
        await check_url(f"http://[{address}]/x.png")
    resolves_to["aaaa.attacker.example"] = [address]
    with pytest.raises(FetchRefused, match="non-public"):
        await check_url("http://aaaa.attacker.example/x.png")


@pytest.mark.parametrize("address", EMBEDDED_PUBLIC)
async def test_ipv6_forms_of_public_ipv4_addresses_pass(resolves_to, address):
    await check_url(f"http://[{address}]/x.png")
    resolves_to["aaaa.example"] = [address]
    await check_url("http://aaaa.example/x.png")


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "green").save(buffer, "PNG")
    return buffer.getvalue()


PUBLIC = "93.184.215.14"


@pytest.fixture
def https_server(tmp_path) -> Iterator[tuple[str, int, ssl.SSLContext, list[str]]]:
    """An HTTPS server whose certificate names only images.example: (name, port, a client
    context that trusts it, the Host header of every request it served)."""
    certificate = self_signed("images.example", tmp_path)
    hosts: list[str] = []

    async def image(request: Request) -> Response:
        hosts.append(request.headers["host"])
        return Response(png(), media_type="image/png")

    with serve(Starlette(routes=[Route("/cat.png", image)]), certificate=certificate) as url:
        trust = ssl.create_default_context(cafile=str(certificate[0]))
        yield "images.example", int(url.rsplit(":", 1)[1]), trust, hosts


async def test_the_connection_goes_to_the_checked_address_with_the_host_name(
    https_server, rebinding, network
):
    """DNS rebinding: the name answers a public address to the check and 127.0.0.1 to any
    later lookup. The fetch connects to the public address it checked (played by the test
    server), sends the original Host header and verifies the certificate against the name
    (the certificate names only images.example, so this also proves the TLS server name)."""
    name, port, trust, hosts = https_server
    rebinding[name] = [[PUBLIC], ["127.0.0.1"]]
    network.routes[(PUBLIC, port)] = port
    async with httpx.AsyncClient(verify=trust) as client:
        fetched = await fetch_image(client, f"https://{name}:{port}/cat.png")
    assert fetched.data == png() and fetched.url == f"https://{name}:{port}/cat.png"
    assert network.attempts == [(PUBLIC, port)]
    assert hosts == [f"{name}:{port}"]


async def test_a_second_answer_never_leads_to_127_0_0_1(rebinding, network):
    """Nothing serves the public address here: the fetch fails, and it never tried the
    loopback address that the second lookup would have given."""
    rebinding["rebind.attacker.example"] = [[PUBLIC], ["127.0.0.1"]]
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchFailed, match="could not connect"):
            await fetch_image(client, "http://rebind.attacker.example:8080/cat.png")
    assert network.attempts == [(PUBLIC, 8080)]
    assert not any(ipaddress.ip_address(host).is_loopback for host, _ in network.attempts)


async def test_the_request_names_the_host_and_goes_to_its_checked_address(resolves_to):
    """What the transport is asked to send: the URL carries the checked address, the Host
    header and the TLS server name (httpx's sni_hostname extension) the original name; a
    redirect to another name is resolved, checked and pinned the same way."""
    resolves_to["images.example"] = [PUBLIC]
    resolves_to["cdn.example"] = ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if len(sent) == 1:
            return httpx.Response(302, headers={"location": "https://cdn.example/c/cat.png"})
        return httpx.Response(200, content=png())

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        fetched = await fetch_image(client, "https://images.example:8443/cat.png?size=2")
    first, second = sent
    assert str(first.url) == f"https://{PUBLIC}:8443/cat.png?size=2"
    assert first.headers["host"] == "images.example:8443"
    assert first.extensions["sni_hostname"] == "images.example"
    assert str(second.url) == "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/c/cat.png"
    assert second.headers["host"] == "cdn.example"
    assert second.extensions["sni_hostname"] == "cdn.example"
    assert fetched.url == "https://cdn.example/c/cat.png"


async def test_a_redirect_is_checked_against_the_address_it_connects_to(rebinding, network):
    """The redirect's name answers public to the check and private afterwards: the hop is
    resolved once, checked, and connected to as checked."""
    rebinding["first.example"] = [[PUBLIC]]
    rebinding["second.attacker.example"] = [["93.184.215.15"], ["10.0.0.1"]]

    async def hop(request: Request) -> Response:
        return RedirectResponse("http://second.attacker.example:8081/cat.png")

    with serve(Starlette(routes=[Route("/hop", hop)])) as url:
        port = int(url.rsplit(":", 1)[1])
        network.routes[(PUBLIC, port)] = port
        async with httpx.AsyncClient() as client:
            with pytest.raises(FetchFailed, match="could not connect"):
                await fetch_image(client, f"http://first.example:{port}/hop")
    assert network.attempts == [(PUBLIC, port), ("93.184.215.15", 8081)]
