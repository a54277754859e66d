"""The ASGI pieces `server.py` assembles: middleware, the GraphQL endpoint and its socket
transport, health and metrics, webhooks, and embedded mode's worker."""
