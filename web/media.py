"""/media: the local output store's files, served as what they are: written once under a key
no other bytes ever get (storage.output_key gives a redraw a new key), so browsers and CDNs
may keep them for good. Starlette's StaticFiles adds the ETag and Last-Modified and answers
If-None-Match with 304; this adds the Cache-Control that says so."""

from __future__ import annotations

import os

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

# A year, the longest caches honour; `immutable`: not even revalidated on a reload.
CACHE_FOREVER = "public, max-age=31536000, immutable"


class MediaFiles(StaticFiles):
    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        # The file, or 304 Not Modified when the client's ETag matches: both say it again.
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = CACHE_FOREVER
        return response
