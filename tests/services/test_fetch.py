from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from services.fetch import FetchRefused, check_url, fetch
from tests.support.fake_server import serve

IMAGES = frozenset({"image/png", "image/jpeg", "image/webp"})


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


LOCAL = frozenset({"127.0.0.1"})


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
        fetched = await fetch(
            client,
            f"{server}/image.png",
            max_bytes=100_000,
            allowed_types=IMAGES,
            allow_hosts=LOCAL,
        )
    assert fetched.content_type == "image/png" and fetched.data.startswith(b"\x89PNG")


async def test_a_redirect_to_a_private_address_is_refused(server):
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchRefused, match="non-public"):
            await fetch(
                client,
                f"{server}/hop?to=http://10.0.0.7/secret",
                max_bytes=100_000,
                allowed_types=IMAGES,
                allow_hosts=LOCAL,
            )
        fetched = await fetch(
            client,
            f"{server}/hop?to={server}/image.png",
            max_bytes=100_000,
            allowed_types=IMAGES,
            allow_hosts=LOCAL,
        )
        assert fetched.url.endswith("/image.png")


async def test_size_and_content_are_checked(server):
    async with httpx.AsyncClient() as client:
        with pytest.raises(FetchRefused, match="larger"):
            await fetch(
                client,
                f"{server}/huge.png",
                max_bytes=100_000,
                allowed_types=IMAGES,
                allow_hosts=LOCAL,
            )
        with pytest.raises(FetchRefused, match="type"):
            await fetch(
                client,
                f"{server}/lying.png",
                max_bytes=100_000,
                allowed_types=IMAGES,
                allow_hosts=LOCAL,
            )
        with pytest.raises(FetchRefused):  # the test server itself is loopback
            await fetch(client, f"{server}/image.png", max_bytes=100_000, allowed_types=IMAGES)
