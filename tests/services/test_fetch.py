"""Fetching: what is fetched (type by content, size cap, redirects) and how long it may take
(an overall deadline, a minimum rate once the body has had a short grace)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services.fetch import FetchFailed, FetchRefused, FetchTiming, check_url
from tests.support.fake_server import Drip, free_port, serve
from tests.support.fetching import LOCAL, fetch_image


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "PNG")
    return buffer.getvalue()


async def image(request: Request) -> Response:
    return Response(png(), media_type="image/png")


async def lying(request: Request) -> Response:
    return Response(b"<html>not an image</html>", media_type="image/png")


async def huge(request: Request) -> Response:
    return Response(png() + b"\0" * 200_000, media_type="image/png")


async def hop(request: Request) -> Response:
    return RedirectResponse(request.query_params["to"])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/image.png", image),
            Route("/lying.png", lying),
            Route("/huge.png", huge),
            Route("/hop", hop),
        ]
    )
    with serve(app) as url:
        yield url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.png",
        "http://10.1.2.3/x.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x.png",
        "http://localhost/x.png",
        "http://192.168.0.1/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http:///x",
        "http://user:pw@example.com/",
    ],
)
async def test_private_and_odd_urls_are_refused(url):
    with pytest.raises(FetchRefused):
        await check_url(url)


async def test_a_public_address_passes():
    await check_url("http://93.184.215.14/image.png")


async def test_fetches_and_sniffs_the_real_type(server):
    async with httpx.AsyncClient() as client:
        fetched = await fetch_image(client, f"{server}/image.png", allow_hosts=LOCAL)
    assert fetched.content_type == "image/png" and fetched.data.startswith(b"\x89PNG")


async def test_a_redirect_to_a_private_address_is_refused(server):
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchRefused, match="non-public"):
            await fetch_image(client, f"{server}/hop?to=http://10.0.0.7/secret", allow_hosts=LOCAL)
        fetched = await fetch_image(
            client,
            f"{server}/hop?to={server}/image.png",
            allow_hosts=LOCAL,
        )
        assert fetched.url.endswith("/image.png")


async def test_size_and_content_are_checked(server):
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchRefused, match="larger"):
            await fetch_image(client, f"{server}/huge.png", allow_hosts=LOCAL)
        with pytest.raises(FetchRefused, match="type"):
            await fetch_image(client, f"{server}/lying.png", allow_hosts=LOCAL)
        with pytest.raises(FetchRefused):  # the test server itself is loopback
            await fetch_image(client, f"{server}/image.png")


@pytest.fixture(scope="module")
def dripping() -> Iterator[str]:
    """A PNG header, then one byte every 50 ms for as long as the client listens."""
    with serve(Drip(0.05)) as url:
        yield url


# Recovery bound for the tests below: far above every deadline they set, so only a fetch
# that never ends reaches it.
NEVER = 20


async def test_a_dripping_server_fails_at_the_deadline(dripping):
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchFailed, match=r"not fetched within 0\.5 s"):
            await asyncio.wait_for(
                fetch_image(
                    client,
                    f"{dripping}/cat.png",
                    allow_hosts=LOCAL,
                    timing=FetchTiming(deadline=0.5, min_rate=0),
                ),
                NEVER,
            )


async def test_a_body_below_the_minimum_rate_fails_after_its_grace(dripping):
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchFailed, match="slower than 1000 bytes/s"):
            await asyncio.wait_for(
                fetch_image(
                    client,
                    f"{dripping}/cat.png",
                    allow_hosts=LOCAL,
                    timing=FetchTiming(deadline=60, min_rate=1000, grace=0.2),
                ),
                NEVER,
            )


async def test_a_slow_body_above_the_minimum_rate_completes():
    # 50 bytes/s against a minimum of 1 byte/s: far apart, whatever the machine's load.
    with serve(Drip(0.02, count=10)) as url:
        async with httpx.AsyncClient() as client:
            fetched = await fetch_image(
                client,
                f"{url}/cat.png",
                allow_hosts=LOCAL,
                timing=FetchTiming(deadline=NEVER, min_rate=1, grace=0.05),
            )
    assert fetched.data == b"\x89PNG\r\n\x1a\n" + b"\0" * 10


async def test_an_unreachable_server_is_a_fetch_failure():
    """Not an httpx error that the caller would have to know about (the runner took one for
    a crash: an INTERNAL error event instead of a failed input image)."""
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchFailed, match="could not connect"):
            await fetch_image(client, f"http://127.0.0.1:{free_port()}/cat.png", allow_hosts=LOCAL)
