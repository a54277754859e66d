from __future__ import annotations

from models.user import Role
from tests.support.graphql import run

ADJUST = """mutation($u: ID!, $a: Int!, $r: String!, $k: String) {
  adjustCredits(userId: $u, amount: $a, reason: $r, idempotencyKey: $k) { available total }
}"""


async def test_only_admins_adjust_audit_and_read_other_ledgers(backend, make_user):
    user, other = await make_user(), await make_user()
    admin = await make_user(role=Role.ADMIN)
    cases: list[tuple[str, dict[str, object]]] = [
        (ADJUST, {"u": str(other.id), "a": 5, "r": "gift"}),
        ("{ creditAudit { ok } }", {}),
        (
            "query($u: ID) { creditTransactions(userId: $u) { edges { node { kind } } } }",
            {"u": str(other.id)},
        ),
    ]
    for query, variables in cases:
        result = await run(backend, user, query, **variables)
        assert result.errors and result.errors[0].extensions["code"] == "FORBIDDEN", query

    result = await run(backend, admin, ADJUST, u=str(other.id), a=5, r="gift", k="t-1")
    assert result.errors is None and result.data == {
        "adjustCredits": {"available": 10, "total": 10}
    }
    result = await run(backend, admin, ADJUST, u=str(other.id), a=6, r="gift", k="t-1")
    assert result.errors and result.errors[0].extensions["code"] == "CONFLICT"
    result = await run(backend, admin, ADJUST, u=str(other.id), a=-100, r="oops")
    assert result.errors and result.errors[0].extensions["code"] == "INSUFFICIENT_CREDITS"

    result = await run(backend, admin, "{ creditAudit { ok accounts mismatches { userId } } }")
    assert result.data and result.data["creditAudit"]["ok"] is True
    assert result.data["creditAudit"]["accounts"] >= 3

    result = await run(
        backend,
        admin,
        "query($u: ID) { creditTransactions(userId: $u) "
        "{ edges { node { kind amount reference } } } }",
        u=str(other.id),
    )
    assert result.data is not None
    edges = result.data["creditTransactions"]["edges"]
    assert [e["node"]["kind"] for e in edges] == ["ADJUSTMENT", "GRANT"]
    assert edges[0]["node"]["reference"] == "gift"
