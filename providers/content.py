"""Reading what providers send back: base64 and data URLs, and the real type of bytes.
Shared by every adapter, and by Kiln's own fetcher."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any
from urllib.parse import unquote_to_bytes

from PIL import Image

from providers.base import ProviderError

SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),  # after "RIFF" and the size
    (b"ftyp", 4, "video/mp4"),
)


def redact(text: str, secret: str) -> str:
    """Providers sometimes echo the credential back in an error: never pass it on."""
    if secret and len(secret) >= 4:
        return text.replace(secret, "[redacted]")
    return text


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from the image header (Pillow reads no pixels for this)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # not an image Pillow knows: Kiln's fetcher checks types later
        return None, None


def bad_response(message: str, status_code: int | None = None) -> ProviderError:
    """The provider answered, but not with anything we can use (retryable: it may next time)."""
    return ProviderError("PROVIDER_BAD_RESPONSE", message, status_code=status_code)


def sniff(data: bytes) -> str | None:
    """The content type of `data` judged by its first bytes, never by anyone's word."""
    for magic, offset, content_type in SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if content_type == "image/webp" and not data.startswith(b"RIFF"):
                continue
            return content_type
    return None


def decode_base64(value: Any, what: str = "an image") -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as error:
        raise bad_response(f"The provider sent {what} that is not base64.") from error


def decode_data_url(url: str) -> tuple[bytes, str | None]:
    """`data:[type][;base64],payload` -> (bytes, type or None)."""
    header, _, payload = url.partition(",")
    if not header.startswith("data:"):
        raise bad_response("The provider sent a malformed data URL.")
    content_type = header[5:].split(";")[0] or None
    if header.endswith(";base64"):
        return decode_base64(payload, "a data URL"), content_type
    return unquote_to_bytes(payload), content_type
