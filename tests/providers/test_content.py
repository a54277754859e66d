from __future__ import annotations

import base64

import pytest

from providers.base import ProviderError
from providers.content import decode_base64, decode_data_url, sniff

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 8


def test_sniffing_goes_by_the_bytes():
    assert sniff(PNG) == "image/png"
    assert sniff(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    assert sniff(b"XXXX\0\0\0\0WEBP") is None
    assert sniff(b"GIF89a") == "image/gif"
    assert sniff(b"\0\0\0\x18ftypmp42") == "video/mp4"
    assert sniff(b"<html>") is None


def test_data_urls_and_base64():
    encoded = base64.b64encode(PNG).decode()
    assert decode_data_url(f"data:image/png;base64,{encoded}") == (PNG, "image/png")
    assert decode_data_url("data:text/plain,hello%20there") == (b"hello there", "text/plain")
    assert decode_base64(encoded) == PNG
    for broken in ("data:image/png;base64,@@@", "image/png;base64,AAAA"):
        with pytest.raises(ProviderError) as caught:
            decode_data_url(broken)
        assert caught.value.code == "PROVIDER_BAD_RESPONSE"
