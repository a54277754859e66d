"""Run a small ASGI app (a fake third-party provider) on a real local port, in a thread, so
adapters are tested over real HTTP with their real wire format. Also: a server that drips its
body (the slow server a fetch must not wait for) and a self-signed certificate for a name
(HTTPS to a host name while connecting to a pinned address)."""

from __future__ import annotations

import asyncio
import datetime
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.types import ASGIApp, Receive, Scope, Send


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(
    app: ASGIApp, certificate: tuple[Path, Path] | None = None, **options: Any
) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:PORT) while the app serves; stops it after.
    With a (certificate, key) pair it serves HTTPS (https://127.0.0.1:PORT); `options` are
    more uvicorn.Config arguments (Kiln's own, server.uvicorn_options)."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        loop="asyncio",
        ssl_certfile=str(certificate[0]) if certificate else None,
        ssl_keyfile=str(certificate[1]) if certificate else None,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"fake-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake server did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if certificate else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Drip:
    """An app that answers every request 200 with `head` at once, then one byte every
    `interval` seconds, for as long as the client listens (or `count` bytes, then the end):
    a server that never trips a per-read timeout. `requests` counts the requests."""

    def __init__(
        self, interval: float, head: bytes = b"\x89PNG\r\n\x1a\n", count: int | None = None
    ) -> None:
        self.interval = interval
        self.head = head
        self.count = count
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        headers = [(b"content-type", b"image/png")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.head, "more_body": True})

        async def drip() -> None:
            sent = 0
            while self.count is None or sent < self.count:
                await asyncio.sleep(self.interval)
                await send({"type": "http.response.body", "body": b"\0", "more_body": True})
                sent += 1
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        dripping = asyncio.ensure_future(drip())
        try:
            # uvicorn's send() returns quietly once the client has gone: stop on the
            # disconnect, not on an error from send().
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            dripping.cancel()


def self_signed(name: str, directory: Path) -> tuple[Path, Path]:
    """A certificate for `name` (its own issuer) and its key, written under `directory`: a
    client that trusts it verifies an HTTPS server as `name` and as nothing else."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
