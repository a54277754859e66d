"""Outputs in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, moto in the tests).

Object keys are ``f"{config.prefix}{key}"``. ``url_for`` returns either a public URL
(``public_base_url``, e.g. a CDN or a public bucket) or a presigned GET URL valid for
``presign_seconds``.

Clients and event loops
-----------------------
``put``/``stat``/``delete``/``get`` go through one aioboto3 session and one aiobotocore client,
opened lazily on first use (or explicitly with ``await store.open()``) so that HTTP
connections to the bucket are reused. The client belongs to the event loop it was opened
on, like Tortoise's connections: using the store from another loop raises
``RuntimeError``. ``await store.close()`` releases the client; after that the store may be
opened again on any loop. ``async with S3Store(config) as store:`` opens and closes it.

``url_for`` is synchronous and does no network I/O: it signs locally with a plain
(synchronous) botocore client created once in the constructor. With explicit keys in
``S3Config`` presigning is a pure computation. Without them botocore's default credential
chain is used (environment, config files, container/instance roles); resolving or
refreshing role credentials may then contact the metadata service.

Secrets are never logged: ``S3Config``'s repr leaves out the secret key, and this module
logs nothing about credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aioboto3
import botocore.session
from aiobotocore.config import AioConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.base import StoredObject

# SigV4 presigned URLs are valid for at most seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str = ""
    # None for AWS; set for MinIO, R2, moto, ... (e.g. "http://127.0.0.1:9000").
    endpoint_url: str | None = None
    region: str = "us-east-1"
    # Both None: botocore's default credential chain (env, files, instance/container role).
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    # Set: url_for returns f"{public_base_url}/{prefix}{key}" (CDN or public bucket).
    public_base_url: str | None = None
    # Otherwise: url_for returns a presigned GET URL valid for this many seconds.
    presign_seconds: int = 3600
    # None: path-style addressing when endpoint_url is set (MinIO, moto), virtual-hosted
    # style on AWS. True/False forces one or the other.
    path_style: bool | None = None

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("S3Config.bucket is required")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key, or neither")
        if not 1 <= self.presign_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"presign_seconds must be between 1 and {MAX_PRESIGN_SECONDS}")
        if self.prefix.startswith("/"):
            raise ValueError("S3Config.prefix must not start with '/'")


def check_key(key: str) -> str:
    """Refuse keys that could address something other than what they say once they pass
    through URLs, proxies or a filesystem mirror: absolute paths, '.'/'..' segments, empty
    segments, backslashes and control characters."""
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or _CONTROL.search(key)
        or any(part in ("", ".", "..") for part in key.split("/"))
    ):
        raise ValueError("key escapes the store")
    return key


class S3Store:
    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._public_base_url = (config.public_base_url or "").rstrip("/")
        self._session = aioboto3.Session(
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            region_name=config.region,
        )
        path_style = (
            config.path_style if config.path_style is not None else bool(config.endpoint_url)
        )
        addressing = {"addressing_style": "path" if path_style else "virtual"}
        checksums: dict[str, str] = {}
        if config.endpoint_url:
            # Most S3-compatible services do not implement the checksums botocore sends
            # to AWS by default; only send them where the API requires one.
            checksums = {
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
        self._client_config = AioConfig(
            signature_version="s3v4",
            s3=addressing,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=60,
            **checksums,
        )
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._open_lock: asyncio.Lock | None = None
        # Presigning is local: a synchronous botocore client, made once, signs URLs.
        self._signer: Any = None
        if not self._public_base_url:
            self._signer = botocore.session.get_session().create_client(
                "s3",
                region_name=config.region,
                endpoint_url=config.endpoint_url,
                aws_access_key_id=config.access_key_id,
                aws_secret_access_key=config.secret_access_key,
                config=Config(signature_version="s3v4", s3=addressing),
            )

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.config.bucket!r}, prefix={self.config.prefix!r})"

    def object_key(self, key: str) -> str:
        return f"{self.config.prefix}{check_key(key)}"

    # -- client lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Open the shared client on the running loop (done lazily by put/delete/get)."""
        await self._s3()

    async def close(self) -> None:
        """Close the shared client; the store can be opened again afterwards."""
        stack, self._exit_stack = self._exit_stack, None
        self._client = None
        self._client_loop = None
        self._open_lock = None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> S3Store:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _s3(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client_loop is not None and self._client_loop is not loop:
            raise RuntimeError(
                "this S3Store's client was opened on another event loop; "
                "close() it there before using the store on this one"
            )
        if self._client is not None:
            return self._client
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    self._session.client(
                        "s3",
                        region_name=self.config.region,
                        endpoint_url=self.config.endpoint_url,
                        config=self._client_config,
                    )
                )
                self._exit_stack = stack
                self._client_loop = loop
        return self._client

    # -- OutputStore -----------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        name = self.object_key(key)
        s3 = await self._s3()
        await s3.put_object(
            Bucket=self.config.bucket, Key=name, Body=data, ContentType=content_type
        )

    async def delete(self, key: str) -> None:
        # S3 answers 204 for a key that does not exist, so a repeated delete is a no-op.
        name = self.object_key(key)
        s3 = await self._s3()
        await s3.delete_object(Bucket=self.config.bucket, Key=name)

    async def stat(self, key: str) -> StoredObject | None:
        """The object's size and content type (a HEAD request); None when it does not exist.
        An object that exists is complete: a PUT is atomic."""
        name = self.object_key(key)
        s3 = await self._s3()
        try:
            response = await s3.head_object(Bucket=self.config.bucket, Key=name)
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return StoredObject(int(response["ContentLength"]), response.get("ContentType"))

    async def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when it does not exist."""
        name = self.object_key(key)
        s3 = await self._s3()
        try:
            response = await s3.get_object(Bucket=self.config.bucket, Key=name)
        except ClientError as error:
            if _missing(error):
                raise FileNotFoundError(key) from None
            raise
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    def url_for(self, key: str, base_url: str) -> str:
        """A URL a browser can GET; base_url (the request's) is not used by this store."""
        name = self.object_key(key)
        if self._public_base_url:
            return f"{self._public_base_url}/{quote(name, safe='/')}"
        url: str = self._signer.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.config.bucket, "Key": name},
            ExpiresIn=self.config.presign_seconds,
        )
        return url


def _missing(error: ClientError) -> bool:
    """The error says there is no such object (a HEAD's has no body: only its status)."""
    return error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")
