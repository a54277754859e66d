"""The fast path: a second, narrower execution engine beside Strawberry's, for the operations
Kiln serves most, giving the very response Strawberry would give.

What it replaces, and why (bench/RESULTS.md measured each):
- Strawberry's per-operation machinery for a document seen before (`prepared.py`): an
  execution context, an instance of every extension and a chain of hook context managers per
  operation, about a fifth of the CPU of a page or a `createGeneration`. A prepared operation
  runs the same per-operation work as plain calls, then graphql-core.
- graphql-core's field-by-field completion below each query and mutation root field
  (`execution.py`, `projection.py`): a resolve-info object, a middleware call, awaitable
  checks and path bookkeeping per field, ~40% of the CPU of a 20-generation page.
- Strawberry's stream for a live subscription (`websocket.py`): a subscription resolver hands
  the rest of its subscription to the WebSocket transport, which sends each event encoded
  once (per selection) for all local subscribers, instead of executing GraphQL per event and
  subscriber and keeping a generator, a stream and an executor alive per idle subscriber.

Whatever it cannot reproduce exactly goes the normal way (each module says what). It uses
Strawberry's and graphql-core's internals: `internals.py` is the only module reaching them,
lists every one (`SYMBOLS`), and pyproject.toml pins both libraries to a minor version.

The seam: the schema's executor (`executor`), the HTTP view's prepared operations
(`PreparedOperations`), the WebSocket handler's base class (`HandOffTransport`) and, for
subscription resolvers handing off, `compile_projection`. The setting FAST_PATH_ENABLED
(settings.py) turns all of it off: then everything goes through plain Strawberry.
"""

from __future__ import annotations

from fastpath.execution import projecting as executor
from fastpath.prepared import PreparedOperations
from fastpath.projection import DirectSend, Projection, Unsupported, compile_projection
from fastpath.websocket import ExecuteEvent, Followed, HandOffTransport

__all__ = [
    "DirectSend",
    "ExecuteEvent",
    "Followed",
    "HandOffTransport",
    "PreparedOperations",
    "Projection",
    "Unsupported",
    "compile_projection",
    "executor",
]
