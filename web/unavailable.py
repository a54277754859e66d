"""HTTP endpoints outside GraphQL answer an outage of a dependency (services.outages) with
503 and a JSON body naming the code, as GraphQL answers UNAVAILABLE: the caller (a payment
provider, an AI provider's webhook, a load balancer) sends again later, and nothing is
recorded as an error event."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.errors import Unavailable
from services.outages import as_unavailable, note_unavailable

Endpoint = Callable[[Request], Awaitable[Response]]


def unavailable_response(outage: Unavailable) -> JSONResponse:
    return JSONResponse(
        {"error": outage.message, "code": "UNAVAILABLE", "retryAfter": outage.retry_after},
        status_code=503,
        headers={"Retry-After": str(outage.retry_after)},
    )


def answers_outages(endpoint: Endpoint) -> Endpoint:
    """`endpoint`, answering 503 (counted, logged once a minute) instead of a bare 500 when a
    dependency did not answer; any other exception propagates as before."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as error:
            outage = as_unavailable(error)
            if outage is None:
                raise
            note_unavailable(outage, error)
            return unavailable_response(outage)

    return guarded
