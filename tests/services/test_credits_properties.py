"""Property: any sequence of reserve / capture / release / purchase / adjust keeps every
account equal to its ledger, never negative, and equal to a simple model of the rules."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.generation import Generation
from services import credits
from services.catalogue import load_catalogue
from services.errors import InsufficientCredits
from services.generations import NewGeneration, create_generation
from tests.support.ledger import assert_ledger_matches

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "capture", "release", "purchase", "adjust"]),
        st.integers(min_value=-4, max_value=4),
        st.integers(min_value=0, max_value=50),
    ),
    max_size=20,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=OPERATIONS)
async def test_random_sequences_keep_the_ledger_invariant(make_user, operations):
    user = await make_user(credits=3)
    available, reserved = 3, 0
    holds: list[Generation] = []
    for name, amount, pick in operations:
        if name == "reserve":
            outputs = max(1, abs(amount))
            try:
                holds.append(
                    await create_generation(
                        user, NewGeneration(prompt="p", num_outputs=outputs), load_catalogue()
                    )
                )
                available, reserved = available - outputs, reserved + outputs
            except InsufficientCredits:
                assert outputs > available
        elif name in ("capture", "release") and holds:
            generation = holds[pick % len(holds)]
            settle = credits.capture_for if name == "capture" else credits.release_for
            if await settle(generation.id):
                reserved -= generation.cost
                available += generation.cost if name == "release" else 0
            holds.remove(generation)
        elif name == "purchase":
            await credits.purchase(user.id, 100, f"pi_{uuid.uuid4().hex}")
            available += 100
        elif name == "adjust" and amount:
            try:
                await credits.adjust(user.id, amount, "property test")
                available += amount
            except InsufficientCredits:
                assert -amount > available
        balance = await credits.get_balance(user.id)
        assert (balance.available, balance.reserved) == (available, reserved)
        assert balance.available >= 0 and balance.reserved >= 0
        await assert_ledger_matches(user.id)
