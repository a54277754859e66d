from __future__ import annotations

import pytest

from models.user import User
from services.unit_of_work import after_commit, atomic, joined


async def test_effects_run_after_commit_in_order(backend):
    ran: list[str] = []

    async def effect(name: str) -> None:
        # The row written in the transaction is visible when the effect runs.
        assert await User.filter(email="uow@example.com").exists() is (name != "none")
        ran.append(name)

    async with atomic():
        await User.create(email="uow@example.com", password_hash="x")
        after_commit(lambda: effect("first"))
        async with atomic():
            after_commit(lambda: effect("nested"))
        assert ran == []
    assert ran == ["first", "nested"]
    await User.filter(email="uow@example.com").delete()


async def test_effects_are_dropped_on_rollback(backend):
    ran: list[str] = []

    async def effect() -> None:
        ran.append("x")

    with pytest.raises(RuntimeError):
        async with atomic():
            after_commit(effect)
            raise RuntimeError("boom")
    assert ran == []


async def test_rolled_back_savepoint_drops_only_its_effects(backend):
    ran: list[str] = []

    async def effect(name: str) -> None:
        ran.append(name)

    async with atomic():
        after_commit(lambda: effect("outer"))
        with pytest.raises(ValueError):
            async with atomic():
                after_commit(lambda: effect("inner"))
                raise ValueError
    assert ran == ["outer"]


async def test_after_commit_outside_a_transaction_is_a_bug(backend):
    async def effect() -> None:
        return None

    with pytest.raises(RuntimeError):
        after_commit(effect)


async def test_a_failing_effect_does_not_stop_the_others(backend):
    ran: list[str] = []

    async def broken() -> None:
        raise OSError("broker down")

    async def fine() -> None:
        ran.append("fine")

    async with atomic():
        after_commit(broken)
        after_commit(fine)
    assert ran == ["fine"]


async def test_joined_outside_a_transaction_is_one(backend):
    ran: list[str] = []

    async def effect() -> None:
        assert await User.filter(email="joined@example.com").exists()
        ran.append("x")

    with pytest.raises(RuntimeError):
        async with joined():
            await User.create(email="joined@example.com", password_hash="x")
            after_commit(effect)
            raise RuntimeError("boom")
    assert ran == [] and not await User.filter(email="joined@example.com").exists()
    async with joined():
        await User.create(email="joined@example.com", password_hash="x")
        after_commit(effect)
    assert ran == ["x"]
    await User.filter(email="joined@example.com").delete()


async def test_joined_inside_a_transaction_commits_and_rolls_back_with_it(backend):
    ran: list[str] = []

    async def effect() -> None:
        ran.append("joined")

    with pytest.raises(RuntimeError):
        async with atomic():
            async with joined():
                await User.create(email="joined2@example.com", password_hash="x")
                after_commit(effect)
            assert ran == []  # no commit of its own
            raise RuntimeError("the outer transaction fails later")
    assert ran == []
    assert not await User.filter(email="joined2@example.com").exists()
