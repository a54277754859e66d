from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from models.error_event import Severity

if TYPE_CHECKING:
    from models.generation import Generation
    from models.user import User


# A message meant for one user (a failed generation and its refund, a long one finished).
# Created in the transaction of the change that causes it, streamed after commit, and kept so a
# reconnecting client can list what it missed. Only services.notifications writes it.
class Notification(Model):
    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="notifications", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID
    kind = fields.CharField(max_length=48)
    severity = fields.CharEnumField(Severity, max_length=16)
    title = fields.CharField(max_length=200)
    message = fields.TextField()
    generation: fields.ForeignKeyNullableRelation[Generation] = fields.ForeignKeyField(
        "models.Generation",
        related_name="notifications",
        null=True,
        db_index=False,
        on_delete=fields.SET_NULL,
    )
    generation_id: uuid.UUID | None
    action_label = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "notifications"
        # A user's newest first, paged by id.
        indexes = (("user_id", "id"),)
