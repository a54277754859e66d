"""Fetching URLs Kiln does not control (input images, provider outputs) without letting them
reach inside our network or hold a worker.

- Where: http(s) only; the host is resolved once and refused when any address it resolves
  to is not public (private, loopback, link-local, multicast, reserved; an IPv6 address that
  embeds an IPv4 one is judged by that IPv4 address). The connection then goes to an address
  that was checked (the URL carries the address; the Host header and the TLS server name,
  which the certificate is verified against, stay the original host's), so a second DNS
  answer can never lead elsewhere. Redirects are followed by hand: each hop is resolved,
  checked and pinned the same way.
- How long: the whole fetch (every hop's lookup, connection, headers and body) ends within
  its deadline, and once its body has been arriving for a short grace it must keep an
  average minimum rate: a server that drips a byte now and then (which never trips a
  per-read timeout) cannot hold a worker.
- What: bodies are size-capped and their type is checked by content, not by the server's
  word."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from providers.content import sniff

MAX_REDIRECTS = 5

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 ranges whose addresses carry an IPv4 address in their last 32 bits: IPv4-compatible
# (deprecated, ::a.b.c.d; :: and ::1 fall in it too and are judged as 0.0.0.0 and 0.0.0.1),
# IPv4-translated (SIIT, ::ffff:0:a.b.c.d) and the well-known NAT64 prefix. A translator on
# the way turns them into that IPv4 address. (IPv4-mapped ::ffff:a.b.c.d: `ipv4_mapped`.)
_IPV4_IN_LAST_32_BITS = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
)
# The local-use translation prefix (RFC 8215) is for an operator's own translators, with
# whatever prefix length (and so IPv4 position) they chose: never a public destination.
_LOCAL_USE_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


class FetchError(Exception):
    """The fetch gave no allowed body; the message says why (never shown to users)."""


class FetchRefused(FetchError):
    """The URL, an address it resolves to, a redirect, the size or the content is refused."""


class FetchFailed(FetchError):
    """The server could not be reached, broke off, or was too slow (deadline, minimum rate)."""


@dataclass(frozen=True)
class FetchTiming:
    """How long one fetch may take: all of it within `deadline` seconds; and once its body
    has been arriving for `grace` seconds, on average at least `min_rate` bytes a second
    since the body began (0: no minimum)."""

    deadline: float = 30.0
    min_rate: float = 8192.0
    grace: float = 5.0


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str  # sniffed from the bytes
    url: str  # the final URL after redirects


def is_public(address: Address) -> bool:
    """Whether a connection to `address` stays outside our network. An IPv6 address that
    embeds an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) reaches that IPv4
    address, so the IPv4 address is what is judged."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_USE_NAT64:
            return False
        embedded = _embedded_ipv4(address)
        if embedded:
            return all(is_public(inner) for inner in embedded)
    return address.is_global and not address.is_multicast


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if any(address in network for network in _IPV4_IN_LAST_32_BITS):
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo  # the client's address is what the relay reaches
        return [server, client]
    return []


async def resolve(host: str, port: int) -> list[Address]:
    """The addresses `host` resolves to, in the resolver's order, each once. This is the only
    lookup a fetch makes: it connects to one of these."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:  # socket.gaierror is an OSError
        raise FetchRefused(f"cannot resolve {host}") from error
    addresses: list[Address] = []
    for info in infos:
        # A scope id (fe80::1%eth0) only comes with link-local addresses, which are refused.
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchRefused(f"cannot resolve {host}")
    return addresses


def _parse(url: str | httpx.URL) -> httpx.URL:
    """The URL as httpx will send it (one parser for the check and the request)."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise FetchRefused("not a valid URL") from error
    if target.scheme not in ("http", "https") or not target.raw_host:
        raise FetchRefused("only http(s) URLs with a host are allowed")
    if target.userinfo:
        raise FetchRefused("URLs with credentials are not allowed")
    return target


async def _checked_addresses(target: httpx.URL, allow_hosts: frozenset[str]) -> list[Address]:
    host = target.raw_host.decode("ascii")
    addresses = await resolve(host, target.port or (443 if target.scheme == "https" else 80))
    # FETCH_ALLOW_HOSTS (development and tests) exempts a host from the check, not from
    # being pinned to what it resolved to.
    if target.host not in allow_hosts and not all(is_public(a) for a in addresses):
        raise FetchRefused(f"{target.host} resolves to a non-public address")
    return addresses


async def check_url(url: str, allow_hosts: frozenset[str] = frozenset()) -> list[Address]:
    """The addresses `url`'s host resolves to, all of them public (unless the host is in
    `allow_hosts`). Raises FetchRefused."""
    return await _checked_addresses(_parse(url), allow_hosts)


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    allowed_types: frozenset[str],
    timing: FetchTiming = FetchTiming(),
    allow_hosts: frozenset[str] = frozenset(),
) -> Fetched:
    """GET `url` under the rules of this module. Raises FetchRefused (not allowed) or
    FetchFailed (not reachable, broken off, too slow); never an httpx error."""
    deadline = asyncio.timeout(timing.deadline)
    try:
        async with deadline:
            return await _follow(client, url, max_bytes, allowed_types, timing, allow_hosts)
    except TimeoutError as error:
        if deadline.expired():
            raise FetchFailed(f"not fetched within {timing.deadline:g} s") from error
        raise
    except httpx.InvalidURL as error:  # a redirect's location that is no URL
        raise FetchRefused("not a valid URL") from error
    except httpx.HTTPError as error:
        raise FetchFailed(f"{type(error).__name__}: {error}") from error


async def _follow(
    client: httpx.AsyncClient,
    url: str,
    max_bytes: int,
    allowed_types: frozenset[str],
    timing: FetchTiming,
    allow_hosts: frozenset[str],
) -> Fetched:
    target = _parse(url)
    for _ in range(MAX_REDIRECTS + 1):
        addresses = await _checked_addresses(target, allow_hosts)
        response = await _connect(client, target, addresses, timing)
        try:
            if response.is_redirect:
                location = response.headers.get("location")
                if not location:
                    raise FetchRefused("redirect without a location")
                target = _parse(target.join(location))
                continue
            if response.status_code != 200:
                raise FetchRefused(f"the server answered {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchRefused(f"larger than {max_bytes} bytes")
            data = await _read(response, max_bytes, timing)
        finally:
            await response.aclose()
        content_type = sniff(data)
        if content_type is None or content_type not in allowed_types:
            raise FetchRefused("the content is not an allowed type")
        return Fetched(data, content_type, str(target))
    raise FetchRefused("too many redirects")


async def _connect(
    client: httpx.AsyncClient, target: httpx.URL, addresses: list[Address], timing: FetchTiming
) -> httpx.Response:
    """Send the GET to the first of the checked addresses that accepts a connection; the
    response is open for streaming."""
    host = target.raw_host.decode("ascii")
    headers = {
        "Host": target.netloc.decode("ascii"),
        # Each connection carries one fetch: a connection opened for one name is never
        # reused for another name that resolved to the same address.
        "Connection": "close",
    }
    # Verify the certificate against the name, not the address we connect to (httpx's
    # documented way of connecting to an explicit address).
    extensions = {"sni_hostname": host} if target.scheme == "https" else {}
    failure: httpx.TransportError | None = None
    for address in addresses:
        request = client.build_request(
            "GET",
            target.copy_with(host=str(address)),
            headers=headers,
            extensions=extensions,
            timeout=timing.deadline,
        )
        try:
            return await client.send(request, stream=True, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            failure = error
    raise FetchFailed(f"could not connect to {target.host}") from failure


async def _read(response: httpx.Response, max_bytes: int, timing: FetchTiming) -> bytes:
    """The body, as long as it keeps to the minimum rate: `slow` is moved on with every
    chunk to the moment the average since the body began would fall below the minimum
    (never before the grace ends), and fires even while no chunk comes."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    slow = asyncio.timeout_at(began + timing.grace if timing.min_rate > 0 else None)
    chunks: list[bytes] = []
    size = 0
    try:
        async with slow:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchRefused(f"larger than {max_bytes} bytes")
                chunks.append(chunk)
                if timing.min_rate > 0:
                    slow.reschedule(began + max(timing.grace, size / timing.min_rate))
    except TimeoutError as error:
        if slow.expired():
            raise FetchFailed(f"slower than {timing.min_rate:g} bytes/s") from error
        raise
    return b"".join(chunks)
