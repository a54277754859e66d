"""GraphQL documents and small flows shared by the end-to-end tests."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from tests.e2e.client import GraphQLSocket, KilnClient

PASSWORD = "correct horse battery staple"
FINAL = ("COMPLETED", "FAILED", "CANCELED")

GENERATION_FIELDS = """
    id kind status progress stage model preset provider prompt params cost attempts version
    createdAt startedAt completedAt
    error { code message }
    outputs { index url contentType sizeBytes width height text }
"""

REGISTER = """
mutation Register($email: String!, $password: String!) {
  register(email: $email, password: $password) {
    token
    user { id email role credits { available reserved total } }
  }
}
"""

ME = "query { me { id email credits { available reserved total } } }"

CREATE = f"""
mutation Create($input: CreateGenerationInput!) {{
  createGeneration(input: $input) {{ {GENERATION_FIELDS} }}
}}
"""

CANCEL = f"mutation Cancel($id: ID!) {{ cancelGeneration(id: $id) {{ {GENERATION_FIELDS} }} }}"
RETRY = f"mutation Retry($id: ID!) {{ retryGeneration(id: $id) {{ {GENERATION_FIELDS} }} }}"
GENERATION = f"query One($id: ID!) {{ generation(id: $id) {{ {GENERATION_FIELDS} }} }}"
GENERATIONS = """
query Mine { generations(first: 50) { edges { node { id status cost } } pageInfo { hasNextPage } } }
"""
BALANCE = "query { creditBalance { available reserved total } }"
TRANSACTIONS = """
query Ledger {
  creditTransactions(first: 50) {
    edges { node { id kind amount balanceAfter generationId reference } }
    pageInfo { hasNextPage }
  }
}
"""

GENERATION_UPDATED = f"""
subscription Watch($id: ID!) {{ generationUpdated(id: $id) {{ {GENERATION_FIELDS} }} }}
"""
MY_GENERATIONS = f"subscription Mine {{ myGenerations {{ {GENERATION_FIELDS} }} }}"
BALANCE_CHANGED = (
    "subscription Balance { creditBalanceChanged { available reserved total version } }"
)


@dataclass
class Account:
    token: str
    user_id: str
    email: str


def unique_email() -> str:
    return f"e2e-{uuid.uuid4().hex}@example.com"


async def register(client: KilnClient) -> Account:
    email = unique_email()
    data = await client.data(REGISTER, {"email": email, "password": PASSWORD})
    payload = data["register"]
    return Account(payload["token"], payload["user"]["id"], email)


def image_input(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kind": "IMAGE",
        "prompt": f"a lighthouse at dusk {uuid.uuid4().hex[:8]}",
        "width": 256,
        "height": 192,
    }
    values.update(overrides)
    return values


async def create(client: KilnClient, account: Account, **overrides: Any) -> dict[str, Any]:
    data = await client.data(CREATE, {"input": image_input(**overrides)}, account.token)
    generation: dict[str, Any] = data["createGeneration"]
    return generation


async def balance(client: KilnClient, account: Account) -> dict[str, int]:
    data = await client.data(BALANCE, token=account.token)
    result: dict[str, int] = data["creditBalance"]
    return result


async def transactions(client: KilnClient, account: Account) -> list[dict[str, Any]]:
    """Oldest first."""
    data = await client.data(TRANSACTIONS, token=account.token)
    assert not data["creditTransactions"]["pageInfo"]["hasNextPage"]
    return [edge["node"] for edge in reversed(data["creditTransactions"]["edges"])]


async def generation(client: KilnClient, account: Account, generation_id: str) -> Any:
    data = await client.data(GENERATION, {"id": generation_id}, account.token)
    return data["generation"]


async def my_generations(client: KilnClient, account: Account) -> list[dict[str, Any]]:
    data = await client.data(GENERATIONS, token=account.token)
    return [edge["node"] for edge in data["generations"]["edges"]]


async def watch(
    ws_url: str, account: Account, generation_id: str, within: float = 20.0
) -> list[dict[str, Any]]:
    """Every generationUpdated message for `generation_id` until the server completes."""
    async with await GraphQLSocket.open(ws_url, account.token) as socket:
        subscription = await socket.subscribe(GENERATION_UPDATED, {"id": generation_id})
        messages = await subscription.collect(within)
    return [m["generationUpdated"] for m in messages]


def assert_monotonic(updates: list[dict[str, Any]]) -> None:
    """Versions strictly increase; progress never decreases within one attempt."""
    for before, after in itertools.pairwise(updates):
        assert after["version"] > before["version"], (before, after)
        if after["attempts"] == before["attempts"]:
            assert after["progress"] >= before["progress"], (before, after)


def ledger_sum(entries: list[dict[str, Any]]) -> int:
    return sum(entry["amount"] for entry in entries)


CREATE_API_KEY = """mutation($name: String!) {
  createApiKey(name: $name) { secret apiKey { id name prefix createdAt lastUsedAt } }
}"""
REVOKE_API_KEY = "mutation($id: ID!) { revokeApiKey(id: $id) { id } }"
API_KEYS = "query { apiKeys { id name prefix createdAt lastUsedAt } }"
LOGIN = """mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { token }
}"""


async def create_api_key(client: KilnClient, account: Account, name: str) -> dict[str, Any]:
    """{"secret": ..., "apiKey": {...}}"""
    data = await client.data(CREATE_API_KEY, {"name": name}, account.token)
    created: dict[str, Any] = data["createApiKey"]
    return created
