"""Subscriptions over HTTP: the response formats Kiln streams, and which one a request gets.

- Apollo's multipart subscriptions (Apollo Client's HttpLink, urql): the client's Accept
  starts with `multipart/mixed;subscriptionSpec=1.0`; every event is a part
  `{"payload": <result>}`, `{}` is a heartbeat, and the body ends with the closing boundary
  when the subscription ends.
- GraphQL over Server-Sent Events, "distinct connections mode" (graphql-sse, urql's
  subscriptions over fetch): the client's Accept prefers `text/event-stream`; events are
  `next` with a result, then `complete`. Lines end with LF (SSE allows LF, CRLF or CR): urql
  splits events on a blank line of LFs and would never see one of CRLFs.

A stream is chosen only when it is the client's first choice: urql lists `text/event-stream`
and `multipart/mixed` after the JSON types in the Accept of every query, and a query must
then get plain JSON (and the prepared path, fastpath/prepared.py)."""

from __future__ import annotations

import functools
from enum import Enum

from strawberry.http.streaming import MultipartSubscriptionTransport, SSETransport
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, MULTIPART_SUBSCRIPTION_PROTOCOL


class Stream(Enum):
    MULTIPART = MULTIPART_SUBSCRIPTION_PROTOCOL
    SSE = GRAPHQL_SSE_PROTOCOL


# Media types a plain JSON answer satisfies.
_JSON = frozenset(
    {
        "application/json",
        "application/graphql-response+json",
        "application/graphql+json",
        "application/*",
        "*/*",
    }
)
# Longest Accept header looked at: a longer one is read only this far.
_MAX_ACCEPT = 1024


def _params(parts: list[str]) -> dict[str, str]:
    params = {}
    for part in parts:
        name, _, value = part.partition("=")
        params[name.strip().lower()] = value.strip().strip("'\"")
    return params


def requested_stream(accept: str) -> Stream | None:
    """The stream the client asked for, by the media type it prefers most (the first among
    those of the highest quality that Kiln can answer); None for plain JSON."""
    return _requested_stream(accept[:_MAX_ACCEPT])


@functools.lru_cache(maxsize=256)
def _requested_stream(accept: str) -> Stream | None:
    ranges = []
    for position, media_range in enumerate(accept.split(",")):
        media_type, *parts = media_range.split(";")
        params = _params(parts)
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        if quality > 0:
            ranges.append((-quality, position, media_type.strip().lower(), params))
    for _, _, media_type, params in sorted(ranges, key=lambda r: (r[0], r[1])):
        if media_type in _JSON:
            return None
        if media_type == "text/event-stream":
            return Stream.SSE
        if (
            media_type == "multipart/mixed"
            and params.get("subscriptionspec", "").startswith("1.0")
            and params.get("boundary", "graphql") == "graphql"
        ):
            return Stream.MULTIPART
    return None


class MultipartSubscriptions(MultipartSubscriptionTransport):
    def accepts(self, accept: str) -> bool:
        return requested_stream(accept) is Stream.MULTIPART


class EventStream(SSETransport):
    def accepts(self, accept: str) -> bool:
        return requested_stream(accept) is Stream.SSE

    def encode_event(self, event: str, data: str | None = None) -> str:
        if data and ("\r" in data or "\n" in data):
            raise ValueError("SSE event data must not contain newlines")
        return f"event: {event}\ndata: {data or ''}\n\n"

    def encode_comment(self, comment: str) -> str:
        return f": {comment}\n\n"
