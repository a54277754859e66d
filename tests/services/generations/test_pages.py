"""A user's page of generations and the outputs behind it, in fixed SQL, on both backends."""

from __future__ import annotations

import uuid

import pytest

from models.generation import GenerationKind, GenerationStatus
from services import generations
from services.errors import BadUserInput
from services.generations import StoredOutput
from services.generations import pages as generation_pages
from services.pagination import encode_cursor
from tests.support.generations import create


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


async def test_a_page_reads_its_outputs_with_it(make_user):
    user = await make_user(credits=10)
    first, second = await create(user, num_outputs=2), await create(user)
    await generations.start(first.id)
    text = 'He said "hi"\n\\ ✓'  # JSON's escapes survive the page's own statement
    outputs = [
        StoredOutput(1, f"{user.id}/{first.id}/1.png", "image/png", 6, 64, 32),
        StoredOutput(0, f"{user.id}/{first.id}/0.txt", "text/plain", 5, None, None, text),
    ]
    await generations.complete(first.id, outputs, "local")
    page = await generation_pages.list_generations(user, first=10, after=None, with_outputs=True)
    assert [g.id for g in page.items] == [second.id, first.id]
    assert page.items[0].outputs == []
    (loaded,) = await generation_pages.outputs_by_generation([first.id])
    assert page.items[1].outputs == loaded
    assert [o.index for o in loaded] == [0, 1] and loaded[0].text == text
    plain = await generation_pages.list_generations(user, first=10, after=None)
    assert [g.outputs for g in plain.items] == [None, None]
    assert [g[:-1] for g in plain.items] == [g[:-1] for g in page.items]
    rest = await generation_pages.list_generations(
        user,
        first=1,
        after=page.cursor_of(page.items[0]),
        statuses=[GenerationStatus.COMPLETED],
        kind=GenerationKind.IMAGE,
        with_outputs=True,
    )
    assert [g.id for g in rest.items] == [first.id] and rest.items[0].outputs == loaded
    assert not rest.has_next


async def test_timestamps_and_cursors_print_as_the_orm_rows_do(make_user):
    user = await make_user(credits=10)
    made = await create(user)
    await generations.start(made.id)
    await generations.complete(made.id, [], "local")
    page = await generation_pages.list_generations(user, first=5, after=None, with_outputs=True)
    (listed,) = page.items
    fresh = await type(made).get(id=made.id)
    for name in ("created_at", "queued_at", "started_at", "completed_at"):
        assert getattr(listed, name).isoformat() == getattr(fresh, name).isoformat(), name
    assert page.cursor_of(listed) == encode_cursor(fresh.created_at, str(fresh.id))
