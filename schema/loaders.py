"""One DataLoader per relation, created per request so nothing is cached across users."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from functools import cached_property

from strawberry.dataloader import DataLoader

from models.generation import Generation
from services.generations.outputs import StoredOutput
from services.generations.pages import outputs_by_generation


async def _generations(ids: Sequence[uuid.UUID]) -> list[Generation | None]:
    found = {g.id: g for g in await Generation.filter(id__in=list(ids))}
    return [found.get(i) for i in ids]


async def _children(ids: Sequence[uuid.UUID]) -> list[list[Generation]]:
    grouped: dict[uuid.UUID, list[Generation]] = defaultdict(list)
    rows = await Generation.filter(parent_id__in=list(ids)).order_by("created_at")
    for row in rows:
        if row.parent_id is not None:
            grouped[row.parent_id].append(row)
    return [grouped[i] for i in ids]


class Loaders:
    """Each loader is made on first use: most requests use none (a page reads its outputs
    with its rows), and every request and socket gets a Loaders."""

    def __init__(self, *, cache: bool = True) -> None:
        self._cache = cache

    @cached_property
    def outputs(self) -> DataLoader[uuid.UUID, list[StoredOutput]]:
        return DataLoader(load_fn=outputs_by_generation, cache=self._cache)

    @cached_property
    def generation(self) -> DataLoader[uuid.UUID, Generation | None]:
        return DataLoader(load_fn=_generations, cache=self._cache)

    @cached_property
    def children(self) -> DataLoader[uuid.UUID, list[Generation]]:
        return DataLoader(load_fn=_children, cache=self._cache)
