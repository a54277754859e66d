"""Moved to the fastpath package (fastpath/projection.py). Only resolvers/subscriptions.py
still imports these names from here; delete this module once it imports them from `fastpath`
(and no longer has `_Direct`, which nothing reaches: no transport sets DIRECT_SEND)."""

from __future__ import annotations

from contextvars import ContextVar

from fastpath import DirectSend, Projection, Unsupported, compile_projection

DIRECT_SEND: ContextVar[DirectSend | None] = ContextVar("kiln_direct_send", default=None)

__all__ = ["DIRECT_SEND", "DirectSend", "Projection", "Unsupported", "compile_projection"]
