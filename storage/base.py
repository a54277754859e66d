from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from settings import Settings

EXTENSIONS = {
    "image/png": "png",
    "image/webp": "webp",
    "image/jpeg": "jpg",
    "video/mp4": "mp4",
    "text/plain": "txt",
}
# The content type an output key's extension stands for ("bin" stands for none in particular).
CONTENT_TYPES = {extension: content_type for content_type, extension in EXTENSIONS.items()}


def output_key(
    user_id: uuid.UUID,
    generation_id: uuid.UUID,
    index: int,
    content_type: str,
    *,
    attempt: int = 1,
    redraw: int = 0,
) -> str:
    """`{user_id}/{generation_id}/{index}.{ext}` for a generation's first drawing. A URL once
    handed out serves the same bytes for good (/media, and the CDNs in front of it, cache
    outputs forever), so drawing again (a retry, a workflow's round of changes) writes under
    `{user_id}/{generation_id}/{attempt}-{redraw}/{index}.{ext}` instead of over the old file."""
    name = f"{index}.{EXTENSIONS.get(content_type, 'bin')}"
    if attempt == 1 and redraw == 0:
        return f"{user_id}/{generation_id}/{name}"
    return f"{user_id}/{generation_id}/{attempt}-{redraw}/{name}"


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What `OutputStore.stat` knows of a stored object."""

    size: int
    # None when the store does not record it (the local store knows only the key's extension).
    content_type: str | None


class OutputStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`, atomically: a key that exists holds a complete object
        (so a step resumed after its worker died can keep what that worker stored)."""
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """The object stored under `key`; None when there is none."""
        ...

    async def delete(self, key: str) -> None: ...

    async def get(self, key: str) -> bytes:
        """The stored bytes; FileNotFoundError when there are none."""
        ...

    def url_for(self, key: str, base_url: str) -> str: ...


_store: OutputStore | None = None


def make_store(settings: Settings) -> OutputStore:
    if settings.s3_bucket:
        from storage.s3 import S3Config, S3Store

        return S3Store(
            S3Config(
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                endpoint_url=settings.s3_endpoint_url or None,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id or None,
                secret_access_key=settings.s3_secret_access_key or None,
                public_base_url=settings.s3_public_base_url or None,
                presign_seconds=settings.s3_presign_seconds,
            )
        )
    from storage.local import LocalStore

    return LocalStore(settings.media_dir, settings.public_base_url)


def get_store() -> OutputStore:
    if _store is None:
        raise RuntimeError("the output store is not configured")
    return _store


def set_store(store: OutputStore | None) -> None:
    global _store
    _store = store
