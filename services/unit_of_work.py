"""Transactions whose side effects (enqueues, pub/sub messages) leave only after commit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Generic, TypeVar

from tortoise.transactions import in_transaction

Effect = Callable[[], Awaitable[None]]
T = TypeVar("T")

log = logging.getLogger(__name__)
_pending: ContextVar[list[Effect] | None] = ContextVar("kiln_pending_effects", default=None)
# True inside an atomic() block (effects_only() also collects effects, but opens no transaction).
_in_transaction: ContextVar[bool] = ContextVar("kiln_in_transaction", default=False)


@asynccontextmanager
async def atomic() -> AsyncIterator[None]:
    """A transaction (a savepoint when nested). Effects registered inside run after the
    outermost commit, in order, and are dropped if any enclosing block rolls back."""
    outer = _pending.get()
    effects: list[Effect] = []
    token = _pending.set(effects)
    inside = _in_transaction.set(True)
    try:
        async with in_transaction():
            yield
    finally:
        _in_transaction.reset(inside)
        _pending.reset(token)
    if outer is not None:
        outer.extend(effects)
        return
    for effect in effects:
        try:
            await effect()
        except Exception:
            # The data is committed; a lost enqueue is recovered by the sweeper and a lost
            # publish by the next change or the subscriber's initial read.
            log.exception("after-commit effect failed")


@asynccontextmanager
async def joined() -> AsyncIterator[None]:
    """The enclosing transaction when there is one (no savepoint: its SAVEPOINT and RELEASE
    are two round trips), else a new atomic() block. For steps whose caller never catches
    their errors to carry on, so a failure rolls back the whole transaction either way."""
    if _in_transaction.get():
        yield
        return
    async with atomic():
        yield


@asynccontextmanager
async def effects_only() -> AsyncIterator[None]:
    """For a single statement, which commits on its own: effects registered inside run once
    it returns (or after the enclosing atomic() block commits), and are dropped if it raises.
    Saves the BEGIN and COMMIT round trips of a one-statement atomic() block."""
    if _pending.get() is not None:
        yield  # inside a transaction: its effects wait for that transaction's commit
        return
    effects: list[Effect] = []
    token = _pending.set(effects)
    try:
        yield
    finally:
        _pending.reset(token)
    for effect in effects:
        try:
            await effect()
        except Exception:
            log.exception("after-commit effect failed")


def after_commit(effect: Effect) -> None:
    _effects().append(effect)


def _effects() -> list[Effect]:
    pending = _pending.get()
    if pending is None:
        raise RuntimeError("after_commit() needs an enclosing atomic() block")
    return pending


class _Batch(Generic[T]):
    """One effect that hands all its items to `flush` at once."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], item: T) -> None:
        self.flush = flush
        self.items = [item]

    async def __call__(self) -> None:
        await self.flush(self.items)


def after_commit_batched(flush: Callable[[list[T]], Awaitable[None]], item: T) -> None:
    """`after_commit` for effects that are cheaper together (one Redis pipeline for all the
    messages of a change): an item joins the batch of the same `flush` when that batch is
    the last effect registered, so effects still run in the order they were registered."""
    pending = _effects()
    last = pending[-1] if pending else None
    if isinstance(last, _Batch) and last.flush is flush:
        last.items.append(item)
    else:
        pending.append(_Batch(flush, item))
