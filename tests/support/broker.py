"""Reading what Dramatiq's Redis broker holds."""

from __future__ import annotations

from typing import Any

import orjson
import redis


def stored_messages(sync: redis.Redis, namespace: str, queue: str) -> list[dict[str, Any]]:
    """The messages of `queue` as Redis holds them, without the per-enqueue ids and times."""
    stored: Any = sync.lrange(f"{namespace}:{queue}", 0, -1)
    ids = [i.decode() for i in stored]
    bodies: Any = sync.hgetall(f"{namespace}:{queue}.msgs")
    messages = []
    for redis_id in ids:
        message = orjson.loads(bodies[redis_id.encode()])
        assert message["options"].pop("redis_message_id") == redis_id
        message["options"].pop("eta", None)
        for volatile in ("message_id", "message_timestamp"):
            message.pop(volatile)
        messages.append(message)
    return messages
