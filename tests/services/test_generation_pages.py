"""A user's page of generations and the outputs behind it, in fixed SQL, on both backends."""

from __future__ import annotations

import uuid

import pytest

from models.generation import GenerationKind, GenerationStatus
from services import generation_pages, generations
from services.errors import BadUserInput
from services.generations import StoredOutput
from tests.services.test_generations import create


async def test_listing_pages_newest_first_with_filters(make_user):
    user = await make_user(credits=10)
    other = await make_user(credits=10)
    made = [await create(user, kind=GenerationKind.IMAGE) for _ in range(5)]
    await create(other)
    await generations.cancel(user, made[0].id)
    page = await generation_pages.list_generations(user, first=2, after=None)
    assert [g.id for g in page.items] == [made[4].id, made[3].id] and page.has_next
    rest = await generation_pages.list_generations(
        user, first=10, after=page.cursor_of(page.items[-1])
    )
    assert [g.id for g in rest.items] == [m.id for m in reversed(made[:3])]
    assert not rest.has_next
    canceled = await generation_pages.list_generations(
        user, first=10, after=None, statuses=[GenerationStatus.CANCELED, GenerationStatus.FAILED]
    )
    assert [g.id for g in canceled.items] == [made[0].id]
    assert canceled.items[0].status is GenerationStatus.CANCELED
    texts = await generation_pages.list_generations(
        user, first=10, after=None, kind=GenerationKind.TEXT
    )
    assert texts.items == []
    with pytest.raises(BadUserInput):
        await generation_pages.list_generations(user, first=10, after="not-a-cursor")


async def test_rows_read_back_as_the_orm_reads_them(make_user):
    user = await make_user(credits=10)
    made = await create(user, kind=GenerationKind.IMAGE, negative_prompt="blur")
    (listed,) = (await generation_pages.list_generations(user, first=5, after=None)).items
    fresh = await type(made).get(id=made.id)
    for name in fresh._meta.db_fields:
        assert getattr(listed, name) == getattr(fresh, name), name


async def test_outputs_come_grouped_per_generation_in_order(make_user):
    user = await make_user(credits=10)
    first, second = await create(user, num_outputs=2), await create(user)
    for generation, count in ((first, 2), (second, 1)):
        await generations.start(generation.id)
        outputs = [
            StoredOutput(i, f"{user.id}/{generation.id}/{i}.png", "image/png", 5 + i, 64, 32)
            for i in reversed(range(count))
        ]
        await generations.complete(generation.id, outputs, "local")
    missing = uuid.uuid4()
    grouped = await generation_pages.outputs_by_generation([second.id, missing, first.id])
    assert [[o.index for o in g] for g in grouped] == [[0], [], [0, 1]]
    assert grouped[2][1] == StoredOutput(1, f"{user.id}/{first.id}/1.png", "image/png", 6, 64, 32)
    assert await generation_pages.outputs_by_generation([]) == []
