"""The GraphQL documents the benchmarks send (and tests/web/test_request_cycles.py, which
checks that these same requests leave no reference cycles behind): one text each, so that
what is measured and what is checked stay the same requests."""

from __future__ import annotations

CREATE = "mutation C($input: CreateGenerationInput!) { createGeneration(input: $input) { id } }"
# The first page of a user's generations with their outputs: the read benchmarks' request.
PAGE = """
query Page {
  generations(first: 20) {
    edges { node { id status prompt cost createdAt completedAt
      outputs { index url contentType width height sizeBytes } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
WATCH = "subscription W($id: ID!) { generationUpdated(id: $id) { id status stage version } }"
