"""uvicorn's httptools HTTP protocol with the two limits on a request head that it lacks.

uvicorn (0.54, httptools) keeps reading a request's headers for as long and as large as a
client sends them: a connection that never finishes its headers (slowloris), or never sends a
byte, stays open for good, and a header block of any size is buffered. This protocol:
- closes a connection with 408 when its request head is not complete HEADER_TIMEOUT_SECONDS
  after the connection opened (first request) or after the first byte that followed a
  response (later requests on a kept-alive connection; the idle time between them is
  uvicorn's --timeout-keep-alive);
- closes it with 431 once the head of a request in progress has taken more than
  MAX_HEADER_BYTES beyond the read that started it, so memory stays bounded while it
  arrives (the exact size and count of complete heads are web/head_limits.py's).

uvicorn is told to use it by class path: `--http web.http_protocol:KilnHttpProtocol` (the
README's production command) or `http=` in `uv run server.py`. It overrides only the
asyncio.Protocol methods and the httptools parser callbacks uvicorn's class implements, calling
them first; tests/web/test_http_protocol.py runs it in real uvicorn."""

from __future__ import annotations

from asyncio import TimerHandle, Transport
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from settings import Settings, get_settings


@dataclass(frozen=True)
class HeadRules:
    max_bytes: int
    timeout: float

    @classmethod
    def of(cls, settings: Settings) -> HeadRules:
        return cls(settings.max_header_bytes, settings.header_timeout_seconds)


def _refusal(status: int, reason: bytes) -> bytes:
    body = reason + b"\n"
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
    )


TIMED_OUT = _refusal(408, b"Request Timeout")
TOO_LARGE = _refusal(431, b"Request Header Fields Too Large")


class KilnHttpProtocol(HttpToolsProtocol):
    # None: the process's settings (uvicorn's command line names this class, never an
    # instance); server.py's main() binds the settings it runs with through `configured`.
    rules: ClassVar[HeadRules | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_rules = self.rules or HeadRules.of(get_settings())
        self.head_timer: TimerHandle | None = None
        self.in_head = False  # a request's head has begun and is not complete
        self.head_began_in_this_read = False
        self.head_bytes = 0
        self.refused = False
        self.upgraded = False  # handed to the WebSocket protocol: no longer ours to time

    @classmethod
    def configured(cls, settings: Settings) -> type[KilnHttpProtocol]:
        return type(cls.__name__, (cls,), {"rules": HeadRules.of(settings)})

    # asyncio.Protocol
    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()  # the first head is due this long after connecting

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        self.head_began_in_this_read = False
        super().data_received(data)
        if self.refused or self.upgraded:
            return
        if self.in_head:
            # Counted only when the whole read belongs to one unfinished head (it began
            # before this read and is still not complete): never a body or another request.
            if not self.head_began_in_this_read:
                self.head_bytes += len(data)
                if self.head_bytes > self.head_rules.max_bytes:
                    self._refuse(TOO_LARGE)
        elif self.head_timer is None and not self._request_running():
            # Bytes that began no request (the blank lines HTTP allows before one) stopped
            # uvicorn's keep-alive timer, which only a response starts again: the next head
            # is due from now.
            self._arm_head_timer()

    def handle_websocket_upgrade(self) -> None:
        self.upgraded = True
        self._disarm_head_timer()
        super().handle_websocket_upgrade()
        # The parser holds this protocol's bound methods: a reference cycle, which uvicorn
        # breaks when a connection is lost but not when it is handed to the WebSocket
        # protocol (nothing of this one runs again). Left, it kept every socket's first
        # protocol until a full collection (tests/web/test_http_protocol.py).
        self.parser = None  # type: ignore[assignment]

    # httptools parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.head_began_in_this_read, self.head_bytes = True, True, 0
        if self.head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    # the head deadline
    def _arm_head_timer(self) -> None:
        self.head_timer = self.loop.call_later(self.head_rules.timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        self._refuse(TIMED_OUT)

    def _request_running(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _refuse(self, response: bytes) -> None:
        self.refused = True
        self._disarm_head_timer()
        if not self.transport.is_closing():
            if not self._request_running():  # never into the middle of another response
                self.transport.write(response)
            self.transport.close()
