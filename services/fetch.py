"""Fetching URLs Kiln does not control (input images, provider outputs) without letting them
reach inside our network: http(s) only; every host is resolved and refused when any address
it resolves to is private, loopback, link-local, multicast or reserved; redirects are
followed by hand so each hop is checked the same way; bodies are size-capped and their type
is checked by content, not by the server's word."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from providers.content import sniff

MAX_REDIRECTS = 5


class FetchRefused(Exception):
    """The URL, an address it resolves to, a redirect, the size or the content is refused."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str  # sniffed from the bytes
    url: str  # the final URL after redirects


async def check_url(url: str, allow_hosts: frozenset[str] = frozenset()) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused("only http(s) URLs with a host are allowed")
    if parts.username or parts.password:
        raise FetchRefused("URLs with credentials are not allowed")
    host = parts.hostname
    if host in allow_hosts:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except socket.gaierror as error:
        raise FetchRefused(f"cannot resolve {host}") from error
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise FetchRefused(f"{host} resolves to a non-public address")


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    allowed_types: frozenset[str],
    timeout: float = 30.0,
    allow_hosts: frozenset[str] = frozenset(),
) -> Fetched:
    for _ in range(MAX_REDIRECTS + 1):
        await check_url(url, allow_hosts)
        async with client.stream("GET", url, timeout=timeout, follow_redirects=False) as response:
            if response.is_redirect:
                location = response.headers.get("location")
                if not location:
                    raise FetchRefused("redirect without a location")
                url = urljoin(url, location)
                continue
            if response.status_code != 200:
                raise FetchRefused(f"the server answered {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchRefused(f"larger than {max_bytes} bytes")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchRefused(f"larger than {max_bytes} bytes")
                chunks.append(chunk)
        data = b"".join(chunks)
        content_type = sniff(data)
        if content_type is None or content_type not in allowed_types:
            raise FetchRefused("the content is not an allowed type")
        return Fetched(data, content_type, url)
    raise FetchRefused("too many redirects")
