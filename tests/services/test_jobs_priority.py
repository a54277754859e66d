"""Generations of priority accounts are sent to the priority queue's actor."""

from __future__ import annotations

from services import auth, generations, jobs
from services.catalogue import load_catalogue
from services.generations import NewGeneration


async def test_priority_accounts_run_on_the_priority_queue(backend, make_user):
    regular, premium = await make_user(), await make_user()
    await auth.set_priority(premium.id, True)
    premium = await type(premium).get(id=premium.id)
    before = len(backend.sent)
    slow = await generations.create_generation(regular, NewGeneration(prompt="a"), load_catalogue())
    fast = await generations.create_generation(premium, NewGeneration(prompt="b"), load_catalogue())
    sent = {args[0]: actor for actor, args, _ in backend.sent[before:]}
    assert sent == {str(slow.id): jobs.RUN, str(fast.id): jobs.RUN_PRIORITY}


async def test_senders_that_do_not_know_the_owner_get_the_queue_looked_up(backend, make_user):
    premium = await make_user()
    await auth.set_priority(premium.id, True)
    premium = await type(premium).get(id=premium.id)
    generation = await generations.create_generation(
        premium, NewGeneration(prompt="c"), load_catalogue()
    )
    before = len(backend.sent)
    await jobs.send(jobs.RUN, str(generation.id))  # as the sweeper re-sends it
    assert [actor for actor, *_ in backend.sent[before:]] == [jobs.RUN_PRIORITY]


def test_the_priority_actor_is_declared_on_its_own_queue():
    import dramatiq

    import tasks  # noqa: F401

    actor = dramatiq.get_broker().get_actor(jobs.RUN_PRIORITY)
    assert actor.queue_name == jobs.PRIORITY_QUEUE
    assert jobs.PRIORITY_QUEUE in dramatiq.get_broker().get_declared_queues()
