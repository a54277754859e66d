from __future__ import annotations

import uuid
from enum import StrEnum
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from models.generation import Generation
    from models.user import User


class LedgerKind(StrEnum):
    GRANT = "GRANT"
    PURCHASE = "PURCHASE"
    RESERVE = "RESERVE"
    CAPTURE = "CAPTURE"
    RELEASE = "RELEASE"
    ADJUSTMENT = "ADJUSTMENT"


# `balance` is everything the user owns, `reserved` the part held by generations in flight:
# available credit is `balance - reserved`. Both move only through services.credits.
# `version` counts the account's own moves (each one bumps it in the same UPDATE): the
# version of creditBalanceChanged, so a client keeps the newest state of its account.
# (Model docstrings become SQL table comments, so the explanations live in comments.)
class CreditAccount(Model):
    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "models.User", related_name="account", primary_key=True
    )
    user_id: uuid.UUID
    balance = fields.IntField(default=0)
    reserved = fields.IntField(default=0)
    version = fields.BigIntField(default=0, db_default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "credit_accounts"


# Append-only. `amount` is the signed change to available credit and `held` the change to
# reserved credit, so for every account sum(amount) == balance - reserved and
# sum(held) == reserved: the audit checks exactly that.
class LedgerEntry(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="ledger_entries", db_index=True, on_delete=fields.RESTRICT
    )
    user_id: uuid.UUID
    kind = fields.CharEnumField(LedgerKind, max_length=16)
    amount = fields.IntField()
    held = fields.IntField(default=0)
    balance_after = fields.IntField()
    generation: fields.ForeignKeyNullableRelation[Generation] = fields.ForeignKeyField(
        "models.Generation",
        related_name="ledger_entries",
        null=True,
        db_index=True,
        on_delete=fields.RESTRICT,
    )
    generation_id: uuid.UUID | None
    reference = fields.CharField(max_length=255, null=True)
    # Makes a repeated reserve, capture, release or grant a no-op ("gen:<id>:<attempt>:capture").
    unique_key = fields.CharField(max_length=255, unique=True, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ledger_entries"
