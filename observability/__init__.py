"""Metrics and structured logs. A leaf package: it imports nothing of Kiln's, so every layer
(server, resolvers, services) may use it."""
