"""The local output store and the output key layout."""

from __future__ import annotations

import os
import uuid

import pytest

from storage.base import StoredObject, output_key
from storage.local import LocalStore

KEY = "11111111-1111-1111-1111-111111111111/22222222-2222-2222-2222-222222222222/0.png"


@pytest.fixture
def root(tmp_path):
    return tmp_path / "media"


@pytest.fixture
def store(root) -> LocalStore:
    return LocalStore(root)


async def test_put_writes_the_bytes_under_the_key(store, root):
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)
    await store.put(KEY, data, "image/png")
    path = root / KEY
    assert path.is_file()
    assert path.read_bytes() == data
    assert store.path_for(KEY) == path.resolve()


async def test_put_replaces_an_existing_file(store, root):
    await store.put("u/g/0.txt", b"first version, longer", "text/plain")
    await store.put("u/g/0.txt", b"second", "text/plain")
    assert (root / "u/g/0.txt").read_bytes() == b"second"


async def test_put_leaves_no_partial_file(store, root):
    for index, key in enumerate([KEY, "u/g/1.webp", "u/g/noext", "u/g/0.txt"]):
        await store.put(key, b"x" * (index + 1), "application/octet-stream")
    assert list(root.rglob("*.part")) == []
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == sorted([KEY, "u/g/1.webp", "u/g/noext", "u/g/0.txt"])


async def test_concurrent_puts_of_one_key_never_share_a_partial_file(store, root):
    """Writers of the same key at once (a duplicate delivery) each write their own partial
    file: the key ends up holding one whole version, and no partial file is left."""
    import asyncio

    versions = [bytes([i]) * (1000 + i) for i in range(16)]
    await asyncio.gather(*(store.put(KEY, data, "image/png") for data in versions))
    assert (root / KEY).read_bytes() in versions
    assert list(root.rglob("*.part")) == []


def test_url_for_uses_the_request_base_url_without_public_base_url(store):
    assert store.url_for(KEY, "http://testserver") == f"http://testserver/media/{KEY}"
    assert store.url_for(KEY, "http://testserver/") == f"http://testserver/media/{KEY}"


def test_url_for_prefers_public_base_url(root):
    store = LocalStore(root, "https://kiln.example.com/")
    assert store.url_for(KEY, "http://internal:8000") == f"https://kiln.example.com/media/{KEY}"


@pytest.mark.parametrize(
    "key", ["../x", "a/../../x", "../media-evil/x", "/etc/passwd", "/tmp/kiln-evil"]
)
async def test_keys_escaping_the_root_are_refused(store, root, key):
    with pytest.raises(ValueError):
        store.path_for(key)
    with pytest.raises(ValueError):
        await store.put(key, b"evil", "text/plain")
    with pytest.raises(ValueError):
        await store.delete(key)
    outside = [p for p in root.parent.rglob("*") if p.is_file()]
    assert outside == []


async def test_symlink_out_of_the_root_is_refused(store, root, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root.mkdir()
    (root / "link").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError):
        await store.put("link/x.png", b"evil", "image/png")
    assert list(elsewhere.iterdir()) == []


async def test_dotdot_that_stays_inside_is_allowed(store, root):
    await store.put("a/../b/0.txt", b"ok", "text/plain")
    assert (root / "b/0.txt").read_bytes() == b"ok"


async def test_delete_removes_the_file(store, root):
    await store.put(KEY, b"data", "image/png")
    await store.delete(KEY)
    assert not (root / KEY).exists()


async def test_delete_of_a_missing_key_does_not_raise(store, root):
    await store.delete("nobody/nothing/0.png")
    await store.put(KEY, b"data", "image/png")
    await store.delete(KEY)
    await store.delete(KEY)


async def test_stat_tells_the_size_and_the_type_of_the_extension(store, root):
    assert await store.stat(KEY) is None
    await store.put(KEY, b"\x89PNG" + bytes(100), "image/png")
    assert await store.stat(KEY) == StoredObject(104, "image/png")
    await store.put("u/g/0.bin", b"gif?", "image/gif")
    assert await store.stat("u/g/0.bin") == StoredObject(4, None)  # "bin" names no type


async def test_stat_sees_no_object_in_a_partial_write_or_a_folder(store, root):
    """A worker killed while writing leaves its partial file under another name: the key
    has no object until the rename."""
    (root / "u/g").mkdir(parents=True)
    (root / "u/g/.0.png.123.456.0.part").write_bytes(b"half")
    assert await store.stat("u/g/0.png") is None
    assert await store.stat("u/g") is None
    await store.delete(KEY)
    assert await store.stat(KEY) is None


async def test_stat_refuses_keys_escaping_the_root(store):
    with pytest.raises(ValueError):
        await store.stat("../outside.png")


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [("image/png", "png"), ("image/webp", "webp"), ("text/plain", "txt"), ("image/jpeg", "jpg")],
)
def test_output_key_layout(content_type, ext):
    user_id, generation_id = uuid.uuid4(), uuid.uuid4()
    assert output_key(user_id, generation_id, 2, content_type) == (
        f"{user_id}/{generation_id}/2.{ext}"
    )


def test_output_key_for_an_unknown_type_uses_bin():
    user_id, generation_id = uuid.uuid4(), uuid.uuid4()
    assert output_key(user_id, generation_id, 0, "application/x-thing").endswith("/0.bin")


async def test_output_keys_round_trip_through_the_store(store, root):
    user_id, generation_id = uuid.uuid4(), uuid.uuid4()
    keys = [output_key(user_id, generation_id, i, "image/png") for i in range(3)]
    for i, key in enumerate(keys):
        await store.put(key, bytes([i]), "image/png")
    folder = root / str(user_id) / str(generation_id)
    assert sorted(p.name for p in folder.iterdir()) == ["0.png", "1.png", "2.png"]
