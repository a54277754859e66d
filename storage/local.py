"""Outputs on a local (or shared) filesystem, served by Kiln at /media/{key}."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import threading
from pathlib import Path

from storage.base import CONTENT_TYPES, StoredObject

_writes = itertools.count()


class LocalStore:
    def __init__(self, root: Path, public_base_url: str = "") -> None:
        self.root = root
        self.public_base_url = public_base_url.rstrip("/")
        self._resolved_root = root.resolve()

    def path_for(self, key: str) -> Path:
        """The key's file; ValueError when it (or a symlink on its way) leads out of the root.
        Resolving touches the disk once per path component: done in the writer's thread."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self._resolved_root):
            raise ValueError("key escapes the store")
        return path

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._put, key, data)

    def _put(self, key: str, data: bytes) -> None:
        self._write(self.path_for(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        # Write then rename, so a reader never sees half a file.
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name no other writer uses at the same time (process, thread, sequence number):
        # as unique as a uuid4 here, without its os.urandom syscall per output.
        partial = path.with_name(
            f".{path.name}.{os.getpid()}.{threading.get_ident()}.{next(_writes)}.part"
        )
        partial.write_bytes(data)
        os.replace(partial, path)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(lambda: self.path_for(key).read_bytes())

    async def stat(self, key: str) -> StoredObject | None:
        """The file under `key` (complete: puts rename a finished file into place); its
        content type is the one its extension stands for (None for "bin" and others)."""
        return await asyncio.to_thread(self._stat, key)

    def _stat(self, key: str) -> StoredObject | None:
        path = self.path_for(key)
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return StoredObject(info.st_size, CONTENT_TYPES.get(path.suffix.removeprefix(".")))

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(lambda: self.path_for(key).unlink(missing_ok=True))

    def url_for(self, key: str, base_url: str) -> str:
        return f"{self.public_base_url or base_url.rstrip('/')}/media/{key}"
