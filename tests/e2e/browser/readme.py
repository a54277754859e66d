"""The README's GraphiQL walkthrough, read from the README itself: the browser test types
exactly what a reader would paste."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.e2e.stack import ROOT

SECTION = "## Your first generation, in GraphiQL"
TOKEN_PLACEHOLDER = "PASTE-THE-TOKEN-HERE"
ID_PLACEHOLDER = "PASTE-THE-ID"
_NEXT_HEADING = re.compile(r"^#{1,3} ", re.MULTILINE)
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Walkthrough:
    register: str
    headers: str
    create: str
    subscribe: str
    look_around: str

    def headers_with(self, token: str) -> str:
        return self.headers.replace(TOKEN_PLACEHOLDER, token)

    def subscribe_to(self, generation_id: str) -> str:
        return self.subscribe.replace(ID_PLACEHOLDER, generation_id)


def readme_walkthrough() -> Walkthrough:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index(SECTION)
    end = _NEXT_HEADING.search(readme, start + len(SECTION))
    blocks = _FENCE.findall(readme[start : end.start() if end else None])
    languages = [language for language, _ in blocks]
    assert languages == ["graphql", "json", "graphql", "graphql", "graphql"], (
        f"the README's walkthrough changed shape: {languages}; update this test with it"
    )
    register, headers, create, subscribe, look_around = (text.rstrip("\n") for _, text in blocks)
    assert headers.count(TOKEN_PLACEHOLDER) == 1, headers
    assert subscribe.count(ID_PLACEHOLDER) == 1, subscribe
    return Walkthrough(register, headers, create, subscribe, look_around)
