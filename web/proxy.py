"""The client's address and scheme behind a proxy: X-Forwarded-For and X-Forwarded-Proto are
believed only from the proxies listed in TRUSTED_PROXIES (none by default).

uvicorn believes them from 127.0.0.1 unless told otherwise (`--forwarded-allow-ips`, or
FORWARDED_ALLOW_IPS), and reads that before Kiln's app exists, so the app cannot narrow it:
Kiln runs uvicorn with proxy headers off (`proxy_headers=False` in server.py,
`--no-proxy-headers` in the README's command) and applies them here, from its own setting.
Everything inside this middleware (rate limits, logs, output URLs) sees the real client."""

from __future__ import annotations

from starlette.applications import Starlette
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from settings import Settings


def add_trusted_proxy_headers(app: Starlette, settings: Settings) -> None:
    """Requests that came through a trusted proxy get their client and scheme from its
    headers: the client is the right-most X-Forwarded-For address that is not itself a
    trusted proxy (whatever a client writes to the left of that is never believed). uvicorn's
    own middleware does the parsing; only whom it trusts is Kiln's. Add it outside every
    middleware that looks at the client."""
    proxies = settings.trusted_proxy_list
    if proxies:  # otherwise no one's headers are believed: the peer is the client
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
