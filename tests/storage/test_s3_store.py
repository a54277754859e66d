"""The S3 output store against moto's S3 server, run in-process on a free port.

moto accepts any credentials and does not check presigned URLs' signatures or expiry, so
fetching a presigned URL from moto only proves it addresses the right object. The
signature and the expiry are checked here by an independent SigV4 verifier (written from
AWS's documented algorithm) with explicit clock values instead of sleeping."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from storage.base import StoredObject, output_key
from storage.s3 import S3Config, S3Store

ACCESS_KEY = "AKIAKILNTESTKEY00001"
SECRET_KEY = "kiln/test+Secret0000000000000000000000000"
REGION = "us-east-1"
BUCKET = "kiln-outputs"
REFUSED_BUCKET = "kiln-refused"
SIGV4_PARAMS = {
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
}


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Any:
    """A plain boto3 client, independent of the store, to check what is in the bucket."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=BUCKET)
    client.create_bucket(Bucket=REFUSED_BUCKET)
    return client


def make_config(endpoint: str, **overrides: Any) -> S3Config:
    options: dict[str, Any] = {
        "bucket": BUCKET,
        "endpoint_url": endpoint,
        "region": REGION,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
    }
    options.update(overrides)
    return S3Config(**options)


@pytest.fixture
async def store(endpoint: str, s3: Any) -> AsyncIterator[S3Store]:
    async with S3Store(make_config(endpoint)) as opened:
        yield opened


def new_key(ext: str = "png") -> str:
    return f"{uuid.uuid4()}/{uuid.uuid4()}/0.{ext}"


def keys_in(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def verify_presigned(url: str, secret: str, now: datetime) -> str:
    """'ok', 'expired' or 'bad signature' for a SigV4 query-string-signed GET URL."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(pairs)
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-SignedHeaders"] == "host"
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(pairs)
        if k != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    day, region, service, terminator = scope.split("/")
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{secret}".encode(), day)
    for part in (region, service, terminator):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
        return "bad signature"
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if now > signed_at + timedelta(seconds=int(params["X-Amz-Expires"])):
        return "expired"
    return "ok"


# -- put / get / delete -------------------------------------------------------------------


async def test_put_stores_the_bytes_with_the_content_type(store, s3):
    key = new_key()
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    await store.put(key, data, "image/png")
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "image/png"
    assert await store.get(key) == data


async def test_put_replaces_an_existing_object(store, s3):
    key = new_key("txt")
    await store.put(key, b"first version, longer", "text/plain")
    await store.put(key, b"second", "text/plain; charset=utf-8")
    stored = s3.get_object(Bucket=BUCKET, Key=key)
    assert stored["Body"].read() == b"second"
    assert stored["ContentType"] == "text/plain; charset=utf-8"


async def test_delete_removes_the_object(store, s3):
    key = new_key()
    await store.put(key, b"data", "image/png")
    await store.delete(key)
    assert keys_in(s3, BUCKET, key) == []
    with pytest.raises(FileNotFoundError):
        await store.get(key)


async def test_delete_of_a_missing_key_does_not_raise(store):
    await store.delete(new_key())
    key = new_key()
    await store.put(key, b"data", "image/png")
    await store.delete(key)
    await store.delete(key)


async def test_stat_tells_the_size_and_content_type_of_an_object(store, s3):
    key = new_key()
    assert await store.stat(key) is None
    await store.put(key, b"\x89PNG" + bytes(100), "image/png")
    assert await store.stat(key) == StoredObject(104, "image/png")
    await store.delete(key)
    assert await store.stat(key) is None


async def test_stat_reads_under_the_prefix(endpoint, s3):
    async with S3Store(make_config(endpoint, prefix="media/")) as prefixed:
        key = new_key("webp")
        await prefixed.put(key, b"RIFF", "image/webp")
        assert await prefixed.stat(key) == StoredObject(4, "image/webp")
    async with S3Store(make_config(endpoint)) as plain:
        assert await plain.stat(key) is None
        assert await plain.stat(f"media/{key}") == StoredObject(4, "image/webp")


async def test_output_keys_round_trip_through_the_store(store, s3):
    user_id, generation_id = uuid.uuid4(), uuid.uuid4()
    keys = [output_key(user_id, generation_id, i, "image/webp") for i in range(3)]
    await asyncio.gather(*(store.put(k, bytes([i]), "image/webp") for i, k in enumerate(keys)))
    assert keys_in(s3, BUCKET, f"{user_id}/") == sorted(keys)
    assert [await store.get(k) for k in keys] == [b"\x00", b"\x01", b"\x02"]


async def test_concurrent_first_use_opens_one_client(endpoint, s3):
    store = S3Store(make_config(endpoint))
    keys = [new_key("txt") for _ in range(20)]
    try:
        await asyncio.gather(*(store.put(k, k.encode(), "text/plain") for k in keys))
        client = store._client
        assert client is not None
        await store.delete(keys[0])
        assert store._client is client
    finally:
        await store.close()
    assert store._client is None
    for key in keys[1:]:
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == key.encode()


# -- prefix -------------------------------------------------------------------------------


async def test_prefix_is_applied_to_every_operation(endpoint, s3):
    prefix = f"kiln-{uuid.uuid4().hex[:8]}/outputs/"
    key = new_key()
    async with S3Store(make_config(endpoint, prefix=prefix)) as store:
        await store.put(key, b"prefixed", "image/png")
        assert keys_in(s3, BUCKET, prefix) == [f"{prefix}{key}"]
        assert keys_in(s3, BUCKET, key) == []
        assert await store.get(key) == b"prefixed"

        url = store.url_for(key, "http://testserver")
        assert urlsplit(url).path == f"/{BUCKET}/{prefix}{key}"
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        assert response.status_code == 200
        assert response.content == b"prefixed"

        await store.delete(key)
        assert keys_in(s3, BUCKET, prefix) == []


# -- url_for: presigned -------------------------------------------------------------------


async def test_presigned_url_fetches_the_object(store, endpoint):
    key = new_key()
    data = b"presigned bytes" * 100
    await store.put(key, data, "image/png")
    url = store.url_for(key, "http://testserver")
    assert url.startswith(f"{endpoint}/{BUCKET}/{key}?")
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"


async def test_presigned_url_is_signed_with_the_secret_and_expires(store):
    key = new_key()
    url = store.url_for(key, "http://testserver")
    params = query_of(url)
    assert params["X-Amz-Expires"] == "3600"
    assert params["X-Amz-Credential"].split("/")[2:] == [REGION, "s3", "aws4_request"]
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - signed_at) < timedelta(minutes=5)

    assert verify_presigned(url, SECRET_KEY, signed_at) == "ok"
    assert verify_presigned(url, SECRET_KEY, signed_at + timedelta(seconds=3600)) == "ok"
    assert verify_presigned(url, SECRET_KEY, signed_at + timedelta(seconds=3601)) == "expired"
    assert verify_presigned(url, "another secret", signed_at) == "bad signature"
    other = url.replace(key, new_key(), 1)
    assert verify_presigned(other, SECRET_KEY, signed_at) == "bad signature"


async def test_presign_seconds_sets_the_expiry(endpoint, s3):
    # moto does not enforce X-Amz-Expires, so the expiry is checked on the signed URL itself
    # (an expired URL fails verification) rather than by sleeping and fetching it again.
    async with S3Store(make_config(endpoint, presign_seconds=1)) as store:
        key = new_key()
        await store.put(key, b"short-lived", "image/png")
        url = store.url_for(key, "http://testserver")
    params = query_of(url)
    assert params["X-Amz-Expires"] == "1"
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert verify_presigned(url, SECRET_KEY, signed_at) == "ok"
    assert verify_presigned(url, SECRET_KEY, signed_at + timedelta(seconds=2)) == "expired"


def test_url_for_is_synchronous_and_needs_no_network():
    assert not inspect.iscoroutinefunction(S3Store.url_for)
    # Nothing listens on the discard port: presigning must not try to reach it.
    store = S3Store(make_config("http://127.0.0.1:9"))
    url = store.url_for("u/g/0.png", "http://testserver")
    assert url.startswith(f"http://127.0.0.1:9/{BUCKET}/u/g/0.png?")


def test_presigned_url_on_aws_uses_the_regional_virtual_host():
    config = S3Config(
        bucket="kiln-media",
        region="eu-west-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        presign_seconds=600,
    )
    url = S3Store(config).url_for("u/g/0.png", "http://testserver")
    assert url.startswith("https://kiln-media.s3.eu-west-1.amazonaws.com/u/g/0.png?")
    assert query_of(url)["X-Amz-Expires"] == "600"
    signed_at = datetime.strptime(query_of(url)["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    assert verify_presigned(url, SECRET_KEY, signed_at.replace(tzinfo=UTC)) == "ok"


async def test_credentials_appear_only_as_sigv4_query_params(store):
    url = store.url_for(new_key(), "http://testserver")
    params = query_of(url)
    assert set(params) == SIGV4_PARAMS
    for form in (SECRET_KEY, quote(SECRET_KEY, safe=""), quote(SECRET_KEY)):
        assert form not in url
    without_credential = {k: v for k, v in params.items() if k != "X-Amz-Credential"}
    assert ACCESS_KEY not in urlsplit(url).path
    assert all(ACCESS_KEY not in value for value in without_credential.values())
    assert params["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/")
    assert SECRET_KEY not in repr(store)
    assert SECRET_KEY not in repr(store.config)
    assert SECRET_KEY not in str(store.config)


# -- url_for: public base URL -------------------------------------------------------------


async def test_public_base_url_gives_plain_urls(endpoint, s3):
    config = make_config(endpoint, prefix="media/", public_base_url="https://cdn.example.com/")
    async with S3Store(config) as store:
        key = new_key()
        await store.put(key, b"public", "image/png")
        url = store.url_for(key, "http://internal:8000")
    assert url == f"https://cdn.example.com/media/{key}"
    assert SECRET_KEY not in url
    assert ACCESS_KEY not in url
    assert s3.get_object(Bucket=BUCKET, Key=f"media/{key}")["Body"].read() == b"public"


def test_public_base_url_without_prefix(endpoint):
    store = S3Store(make_config(endpoint, public_base_url="https://kiln-media.example.org"))
    assert store.url_for("u/g/0.png", "") == "https://kiln-media.example.org/u/g/0.png"


# -- refused keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "a/../../x",
        "a/../b/0.txt",
        "./a",
        "a/./b",
        "a/..",
        "/etc/passwd",
        "a//b",
        "a/b/",
        "a\\..\\b",
        "a/b\n.png",
        "",
    ],
)
async def test_keys_with_dot_segments_or_escapes_are_refused(endpoint, s3, key):
    async with S3Store(make_config(endpoint, bucket=REFUSED_BUCKET, prefix="p/")) as store:
        with pytest.raises(ValueError):
            await store.put(key, b"evil", "text/plain")
        with pytest.raises(ValueError):
            await store.delete(key)
        with pytest.raises(ValueError):
            await store.get(key)
        with pytest.raises(ValueError):
            await store.stat(key)
        with pytest.raises(ValueError):
            store.url_for(key, "http://testserver")
    public = S3Store(make_config(endpoint, public_base_url="https://cdn.example.com"))
    with pytest.raises(ValueError):
        public.url_for(key, "http://testserver")
    assert keys_in(s3, REFUSED_BUCKET) == []


# -- event loops --------------------------------------------------------------------------


async def test_the_client_belongs_to_the_loop_that_opened_it(endpoint, s3):
    store = S3Store(make_config(endpoint))
    key = new_key("txt")
    await store.put(key, b"main loop", "text/plain")

    async def use_elsewhere() -> None:
        await store.put(key, b"other loop", "text/plain")

    with pytest.raises(RuntimeError, match="another event loop"):
        await asyncio.to_thread(asyncio.run, use_elsewhere())
    await store.close()

    async def open_elsewhere() -> bytes:
        async with store:
            await store.put(key, b"other loop", "text/plain")
            return await store.get(key)

    assert await asyncio.to_thread(asyncio.run, open_elsewhere()) == b"other loop"
    # Closed there, so this loop may open it again.
    assert await store.get(key) == b"other loop"
    await store.close()


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"bucket": ""},
        {"secret_access_key": None},
        {"access_key_id": None},
        {"presign_seconds": 0},
        {"presign_seconds": 7 * 24 * 3600 + 1},
        {"prefix": "/outputs/"},
    ],
)
def test_invalid_config_is_refused(overrides):
    with pytest.raises(ValueError):
        make_config("http://127.0.0.1:9", **overrides)


def test_config_is_frozen():
    config = make_config("http://127.0.0.1:9")
    with pytest.raises(AttributeError):
        config.bucket = "other"  # type: ignore[misc]
