"""GraphiQL, with subscriptions that authenticate.

Strawberry's page opens its WebSocket without a connection_init payload, and Kiln's sockets
authenticate only there. This passes the Authorization header typed into GraphiQL's header
editor as the payload, read each time the socket (re)connects."""

from __future__ import annotations

import logging

from strawberry.http.ides import get_graphql_ide_html

log = logging.getLogger(__name__)

_FETCHER = """      const fetcher = GraphiQL.createFetcher({
        url: fetchURL,
        headers: defaultHeaders,
        subscriptionUrl,
      });"""

_AUTHENTICATED_FETCHER = """      function socketAuthorization() {
        try {
          const raw = localStorage.getItem("graphiql:headers") || "{}";
          const headers = JSON.parse(raw);
          for (const name of Object.keys(headers)) {
            if (name.toLowerCase() === "authorization") {
              return { authorization: headers[name] };
            }
          }
        } catch (error) {}
        return {};
      }

      const fetcher = GraphiQL.createFetcher({
        url: fetchURL,
        headers: defaultHeaders,
        subscriptionUrl,
        wsConnectionParams: socketAuthorization,
      });"""


def graphiql_html() -> str:
    html = get_graphql_ide_html("graphiql")
    if _FETCHER not in html:
        log.warning("GraphiQL page changed upstream; subscriptions in GraphiQL won't send auth")
        return html
    return html.replace(_FETCHER, _AUTHENTICATED_FETCHER)
