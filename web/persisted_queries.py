"""Automatic Persisted Queries, as Apollo Client, urql's persistedExchange and Apollo Server
speak them: an operation names its document by `extensions.persistedQuery`
(`{"version": 1, "sha256Hash": "<hex>"}`) and leaves `query` out. A hash the server does not
know is answered, with HTTP 200, by the one error those clients take as "send the text":
message `PersistedQueryNotFound` (urql looks only at the message), `extensions.code`
`PERSISTED_QUERY_NOT_FOUND` (Apollo Client looks at either); the client then sends the text
with the hash, which is checked against the text and registered (services/persisted_queries).
Both work over POST and GET (`?extensions={"persistedQuery":...}&variables=...`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cross_web import HTTPException
from starlette.responses import JSONResponse

from services.persisted_queries import Documents, sha256_of

VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
NOT_FOUND_ERROR = {
    "message": "PersistedQueryNotFound",
    "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
}


class PersistedQueryNotFound(Exception):
    """The operation named a document by a hash this server does not know."""


def not_found_response() -> JSONResponse:
    return JSONResponse({"errors": [NOT_FOUND_ERROR]}, status_code=200)


@dataclass(frozen=True, slots=True)
class Persisted:
    sha256: str

    @classmethod
    def named_by(cls, extensions: object) -> Persisted | None:
        """The document an operation's `extensions` name, or None when they name none; a
        malformed name is the client's error (400)."""
        if not isinstance(extensions, dict) or "persistedQuery" not in extensions:
            return None
        named = extensions["persistedQuery"]
        if not isinstance(named, dict):
            raise HTTPException(400, "extensions.persistedQuery must be an object.")
        if named.get("version") != VERSION:
            raise HTTPException(400, "Unsupported persisted query version.")
        sha256 = named.get("sha256Hash")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.lower()):
            raise HTTPException(
                400, "extensions.persistedQuery.sha256Hash must be a SHA-256 hex digest."
            )
        return cls(sha256.lower())


async def document_text(documents: Documents, query: Any, extensions: Any) -> Any:
    """The text an operation runs: `query` itself when it names no persisted document; the
    stored text for a hash alone (PersistedQueryNotFound when there is none); the text sent
    with a hash once it is checked against the hash, and registered. Anything else is left
    as it is for the caller to refuse."""
    persisted = Persisted.named_by(extensions)
    if persisted is None:
        return query
    if query is None:
        found = await documents.get(persisted.sha256)
        if found is None:
            raise PersistedQueryNotFound
        return found
    if not isinstance(query, str):
        return query
    if sha256_of(query) != persisted.sha256:
        raise HTTPException(400, "provided sha does not match query")
    await documents.put(persisted.sha256, query)
    return query
