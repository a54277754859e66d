"""HTTP spoken over a bare socket, for the tests of what the server does with slow, huge or
malformed requests (which no HTTP client library will send)."""

from __future__ import annotations

import socket


def read_until_closed(sock: socket.socket, patience: float) -> bytes:
    """Everything the server sends until it closes the connection; a server that keeps it
    open longer than `patience` seconds between two reads fails the test (socket.timeout)."""
    sock.settimeout(patience)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
