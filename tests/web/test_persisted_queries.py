"""Automatic Persisted Queries through the ASGI app (web/persisted_queries.py), request for
request as Apollo Client's PersistedQueryLink and urql's persistedExchange send them, and how
GET answers may be cached."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import orjson

from services import auth
from tests.support.app import app_client

MODELS = "query Models { models { id kind } }"
ME = "query Me { me { email } }"
CREATE = """mutation Create($input: CreateGenerationInput!) {
  createGeneration(input: $input) { id status }
}"""
NOT_FOUND = {
    "errors": [
        {"message": "PersistedQueryNotFound", "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}
    ]
}
APOLLO_ACCEPT = "application/graphql-response+json,application/json;q=0.9"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text: str, **extra: Any) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(text), **extra}}


def get_params(text: str, variables: dict[str, Any] | None = None, **extra: Any) -> dict[str, str]:
    """A hash-only GET, as Apollo's useGETForHashedQueries and urql send it."""
    params = {"extensions": orjson.dumps(persisted(text, **extra)).decode()}
    if variables is not None:
        params["variables"] = orjson.dumps(variables).decode()
    return params


def bad_input(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    return str(error["message"])


async def test_apollo_client_registers_a_hash_it_was_told_is_unknown(backend, monkeypatch):
    """PersistedQueryLink: the hash alone; told PersistedQueryNotFound, the text with the hash
    (a POST); from then on the hash alone, by POST or by GET."""
    text = f"{MODELS} # apollo {backend.name}"
    hashed = {"operationName": "Models", "variables": {}, "extensions": persisted(text)}
    headers = {"accept": APOLLO_ACCEPT}
    async with app_client(backend, monkeypatch) as client:
        unknown = await client.post("/graphql", json=hashed, headers=headers)
        assert unknown.status_code == 200
        assert unknown.json() == NOT_FOUND
        registered = await client.post("/graphql", json={**hashed, "query": text}, headers=headers)
        assert registered.status_code == 200
        models = registered.json()["data"]["models"]
        assert models
        again = await client.post("/graphql", json=hashed, headers=headers)
        by_get = await client.get("/graphql", params=get_params(text, {}), headers=headers)
    assert again.json() == {"data": {"models": models}}
    assert by_get.json() == {"data": {"models": models}}


async def test_urql_registers_with_a_get_carrying_the_text(backend, monkeypatch):
    """persistedExchange (preferGetForPersistedQueries): a hash-only GET; on a miss the same GET
    with the text added and `miss: true` in the extension."""
    text = f"{MODELS} # urql {backend.name}"
    async with app_client(backend, monkeypatch) as client:
        unknown = await client.get("/graphql", params=get_params(text))
        assert unknown.json() == NOT_FOUND
        retry = {**get_params(text, miss=True), "query": text, "operationName": "Models"}
        registered = await client.get("/graphql", params=retry)
        assert registered.json()["data"]["models"]
        again = await client.get("/graphql", params=get_params(text))
    assert again.json() == registered.json()


async def test_the_hash_is_checked_against_the_text(backend, monkeypatch):
    text = f"{MODELS} # checked {backend.name}"
    other = "{ models { id } }"
    async with app_client(backend, monkeypatch) as client:
        lying = await client.post("/graphql", json={"query": other, "extensions": persisted(text)})
        assert "does not match" in bad_input(lying)
        # Neither text was registered under the hash.
        unknown = await client.post("/graphql", json={"extensions": persisted(text)})
        assert unknown.json() == NOT_FOUND
        future = await client.post(
            "/graphql",
            json={"extensions": {"persistedQuery": {"version": 2, "sha256Hash": sha(text)}}},
        )
        assert "version" in bad_input(future)
        for bad in ("x" * 64, sha(text)[:10], 7, None):
            malformed = {"persistedQuery": {"version": 1, "sha256Hash": bad}}
            answer = await client.post("/graphql", json={"extensions": malformed})
            assert "sha256Hash" in bad_input(answer)
        not_an_object = await client.post("/graphql", json={"extensions": {"persistedQuery": 1}})
        bad_input(not_an_object)


async def test_a_persisted_mutation_never_runs_over_get(backend, make_user, monkeypatch):
    user = await make_user()
    token = auth.issue_token(user, backend.settings)
    headers = {"authorization": f"Bearer {token}"}
    variables = {"input": {"prompt": "a teapot", "width": 64, "height": 64}}
    async with app_client(backend, monkeypatch) as client:
        created = await client.post(
            "/graphql",
            json={"query": CREATE, "variables": variables, "extensions": persisted(CREATE)},
            headers=headers,
        )
        assert created.json()["data"]["createGeneration"]["status"] == "QUEUED"
        again = await client.post(
            "/graphql",
            json={"variables": variables, "extensions": persisted(CREATE)},
            headers=headers,
        )
        assert again.json()["data"]["createGeneration"]["status"] == "QUEUED"
        by_get = await client.get("/graphql", params=get_params(CREATE, variables), headers=headers)
    assert by_get.status_code == 400
    assert by_get.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_persisted_get_is_not_taken_for_a_browser_asking_for_graphiql(backend, monkeypatch):
    text = f"{MODELS} # browser {backend.name}"
    async with app_client(backend, monkeypatch) as client:
        answer = await client.get(
            "/graphql", params=get_params(text), headers={"accept": "text/html,*/*"}
        )
    assert answer.json() == NOT_FOUND


async def test_only_anonymous_persisted_gets_without_errors_are_public(
    backend, make_user, monkeypatch
):
    user = await make_user()
    token = auth.issue_token(user, backend.settings)
    signed = {"authorization": f"Bearer {token}"}
    models = f"{MODELS} # cached {backend.name}"
    me = f"{ME} # cached {backend.name}"
    async with app_client(backend, monkeypatch, persisted_query_cache_seconds=30) as client:
        for text in (models, me):
            await client.post("/graphql", json={"query": text, "extensions": persisted(text)})
        public = await client.get("/graphql", params=get_params(models))
        with_token = await client.get("/graphql", params=get_params(models), headers=signed)
        with_errors = await client.get("/graphql", params=get_params(me))
        by_text = await client.get("/graphql", params={"query": models})
        unknown = await client.get("/graphql", params=get_params(models + " "))
        mine = await client.get("/graphql", params=get_params(me), headers=signed)
    assert public.json()["data"]["models"]
    assert public.headers["cache-control"] == "public, max-age=30"
    assert "authorization" in public.headers["vary"].lower()
    assert with_errors.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert mine.json()["data"]["me"]["email"] == user.email
    for private in (with_token, with_errors, by_text, unknown, mine):
        assert private.headers["cache-control"] == "private, no-store", private.text


async def test_public_caching_can_be_switched_off(backend, monkeypatch):
    text = f"{MODELS} # uncached {backend.name}"
    async with app_client(backend, monkeypatch, persisted_query_cache_seconds=0) as client:
        await client.post("/graphql", json={"query": text, "extensions": persisted(text)})
        answer = await client.get("/graphql", params=get_params(text))
    assert answer.json()["data"]["models"]
    assert answer.headers["cache-control"] == "private, no-store"
