"""Which answer an Accept header asks for (web/http_streams.py): a stream only when it is the
client's first choice, in every spelling the clients use."""

from __future__ import annotations

import pytest

from web.http_streams import EventStream, Stream, requested_stream


@pytest.mark.parametrize(
    ("accept", "stream"),
    [
        # Apollo Client 4 and 3 for a subscription, and the spelling of Apollo's docs.
        (
            "multipart/mixed;boundary=graphql;subscriptionSpec=1.0,"
            "application/graphql-response+json,application/json;q=0.9",
            Stream.MULTIPART,
        ),
        (
            'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json',
            Stream.MULTIPART,
        ),
        ('multipart/mixed;subscriptionSpec="1.0", application/json', Stream.MULTIPART),
        # urql: a subscription, then any query.
        ("text/event-stream, multipart/mixed", Stream.SSE),
        (
            "application/graphql-response+json, application/graphql+json, application/json, "
            "text/event-stream, multipart/mixed",
            None,
        ),
        # graphql-sse, browsers, Apollo Client's queries, curl.
        ("text/event-stream", Stream.SSE),
        ("application/graphql-response+json,application/json;q=0.9", None),
        ("*/*", None),
        ("", None),
        # Preferences by quality; what Kiln does not serve is passed over.
        ("application/json;q=0.5, text/event-stream", Stream.SSE),
        ("text/event-stream;q=0, application/json", None),
        ("multipart/mixed;deferSpec=20220824, text/event-stream", Stream.SSE),
        ("multipart/mixed;boundary=-;subscriptionSpec=1.0", None),
        ("text/html, text/event-stream;q=0.9", Stream.SSE),
        ("application/json;q=x, text/event-stream", None),
    ],
)
def test_a_stream_only_when_it_is_the_first_choice(accept, stream):
    assert requested_stream(accept) is stream


def test_server_sent_events_end_lines_with_lf():
    """urql splits events on a blank line of LFs."""
    transport = EventStream()
    assert transport.encode_event("next", '{"data":{}}') == 'event: next\ndata: {"data":{}}\n\n'
    assert transport.encode_event("complete") == "event: complete\ndata: \n\n"
    assert transport.encode_comment("ping") == ": ping\n\n"
