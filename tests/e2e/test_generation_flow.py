"""End to end: real server and worker processes, driven over HTTP and WebSocket.

Each test runs on both stacks (see conftest.py): `embedded` (server.py alone) and
`production` (uvicorn + dramatiq workers on PostgreSQL and Redis).
"""

from __future__ import annotations

import asyncio
import io
import signal
import uuid

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from PIL import Image

from tests.e2e import api
from tests.e2e.api import FINAL, Account
from tests.e2e.client import GraphQLSocket, close_code_of, handshake
from tests.e2e.conftest import Running
from tests.e2e.stack import REDIS_NAMESPACE

pytestmark = pytest.mark.e2e

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def kinds(entries: list[dict]) -> list[str]:
    return [entry["kind"] for entry in entries]


def of_generation(entries: list[dict], generation_id: str) -> list[dict]:
    return [entry for entry in entries if entry["generationId"] == generation_id]


async def assert_reserved_while_running(
    stack: Running, account: Account, generation_id: str, *, available: int, cost: int
) -> None:
    """The balance holds `cost` while the generation runs. The balance is read first: if the
    generation is still not final afterwards, it was not final when the balance was read
    (capture and release commit with the final state), so the hold must have been there."""
    balance = await api.balance(stack.client, account)
    current = await api.generation(stack.client, account, generation_id)
    assert balance["available"] == available
    if current["status"] not in FINAL:
        assert balance == {"available": available, "reserved": cost, "total": available + cost}


async def test_image_generation_flow(stack: Running) -> None:
    client = stack.client
    account = await api.register(client)
    me = await client.data(api.ME, token=account.token)
    assert me["me"]["credits"] == {"available": 5, "reserved": 0, "total": 5}

    # The socket is open before the generation exists, so subscribing costs one round trip.
    async with await GraphQLSocket.open(stack.ws_url, account.token) as socket:
        created = await api.create(client, account, width=256, height=192)
        assert created["status"] == "QUEUED"
        assert created["cost"] == 1
        assert created["attempts"] == 1
        assert created["model"] == "local-image"
        assert created["outputs"] == []
        assert created["error"] is None
        subscription = await socket.subscribe(api.GENERATION_UPDATED, {"id": created["id"]})
        await assert_reserved_while_running(stack, account, created["id"], available=4, cost=1)
        messages = await subscription.collect(within=20)

    updates = [m["generationUpdated"] for m in messages]
    assert updates, "generationUpdated sent nothing"
    assert {u["id"] for u in updates} == {created["id"]}
    first = updates[0]
    assert first["version"] >= created["version"]
    assert first["status"] in ("QUEUED", "PROCESSING"), first
    api.assert_monotonic(updates)
    processing = [u for u in updates if u["status"] == "PROCESSING"]
    assert len(processing) >= 3, [(u["status"], u["progress"], u["stage"]) for u in updates]
    assert all(u["status"] not in FINAL for u in updates[:-1])

    last = updates[-1]
    assert last["status"] == "COMPLETED", last
    assert last["progress"] == 1.0
    assert last["provider"] == "local"
    assert last["error"] is None
    assert len(last["outputs"]) == 1
    output = last["outputs"][0]
    assert output["index"] == 0
    assert output["contentType"] == "image/png"
    assert (output["width"], output["height"]) == (256, 192)

    response = await client.http.get(output["url"])
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    assert len(response.content) == output["sizeBytes"]
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "PNG"
        assert image.size == (256, 192)

    fetched = await api.generation(client, account, created["id"])
    assert fetched["status"] == "COMPLETED"
    assert fetched["version"] == last["version"]
    assert fetched["outputs"] == last["outputs"]

    assert await api.balance(client, account) == {"available": 4, "reserved": 0, "total": 4}
    ledger = await api.transactions(client, account)
    assert kinds(ledger) == ["GRANT", "RESERVE", "CAPTURE"]
    assert [e["amount"] for e in ledger] == [5, -1, 0]
    assert [e["balanceAfter"] for e in ledger] == [5, 4, 4]
    assert [e["generationId"] for e in ledger] == [None, created["id"], created["id"]]


async def test_failing_generation_is_refunded(stack: Running) -> None:
    client = stack.client
    account = await api.register(client)
    created = await api.create(client, account, model="local-broken")
    assert created["status"] == "QUEUED"
    assert created["cost"] == 1

    updates = await api.watch(stack.ws_url, account, created["id"])
    api.assert_monotonic(updates)
    last = updates[-1]
    assert last["status"] == "FAILED", last
    assert last["error"]["code"] == "ALL_PROVIDERS_FAILED"
    assert last["error"]["message"]
    assert last["outputs"] == []

    fetched = await api.generation(client, account, created["id"])
    assert fetched["status"] == "FAILED"
    assert fetched["error"] == last["error"]

    assert await api.balance(client, account) == {"available": 5, "reserved": 0, "total": 5}
    ledger = await api.transactions(client, account)
    assert kinds(ledger) == ["GRANT", "RESERVE", "RELEASE"]
    assert api.ledger_sum(ledger) == 5
    release = ledger[-1]
    assert release["generationId"] == created["id"]
    assert release["amount"] == 1


async def test_subscribing_after_the_end_sends_the_final_state_once(stack: Running) -> None:
    client = stack.client
    account = await api.register(client)
    created = await api.create(client, account)
    finished = (await api.watch(stack.ws_url, account, created["id"]))[-1]
    assert finished["status"] == "COMPLETED"

    late = await api.watch(stack.ws_url, account, created["id"])
    assert len(late) == 1, late
    assert late[0]["status"] == "COMPLETED"
    assert late[0]["version"] == finished["version"]
    assert late[0]["outputs"] == finished["outputs"]


async def test_insufficient_credits_write_nothing(stack: Running) -> None:
    client = stack.client
    account = await api.register(client)
    first = await api.create(client, account, numOutputs=4)
    assert first["cost"] == 4

    error = await client.error(api.CREATE, {"input": api.image_input(numOutputs=4)}, account.token)
    assert error["extensions"]["code"] == "INSUFFICIENT_CREDITS", error
    assert "Traceback" not in error["message"]

    finished = (await api.watch(stack.ws_url, account, first["id"]))[-1]
    assert finished["status"] == "COMPLETED"
    assert [g["id"] for g in await api.my_generations(client, account)] == [first["id"]]
    assert await api.balance(client, account) == {"available": 1, "reserved": 0, "total": 1}
    ledger = await api.transactions(client, account)
    assert kinds(ledger) == ["GRANT", "RESERVE", "CAPTURE"]
    assert api.ledger_sum(ledger) == 1


async def test_cancel_then_retry_charges_once(stack: Running) -> None:
    client = stack.client
    account = await api.register(client)
    # Four outputs take twelve provider steps: plenty of time to cancel it while it runs.
    created = await api.create(client, account, numOutputs=4)
    assert created["cost"] == 4

    canceled = (await client.data(api.CANCEL, {"id": created["id"]}, account.token))[
        "cancelGeneration"
    ]
    assert canceled["id"] == created["id"]
    assert canceled["status"] == "CANCELED"
    assert canceled["version"] > created["version"]
    assert await api.balance(client, account) == {"available": 5, "reserved": 0, "total": 5}
    ledger = await api.transactions(client, account)
    assert kinds(ledger) == ["GRANT", "RESERVE", "RELEASE"]

    # A cancelled generation is final: watching it gives that state and ends.
    watched = await api.watch(stack.ws_url, account, created["id"])
    assert [u["status"] for u in watched] == ["CANCELED"]

    async with await GraphQLSocket.open(stack.ws_url, account.token) as socket:
        retried = (await client.data(api.RETRY, {"id": created["id"]}, account.token))[
            "retryGeneration"
        ]
        assert retried["id"] == created["id"]
        assert retried["status"] == "QUEUED"
        assert retried["attempts"] == 2
        assert retried["cost"] == 4
        assert retried["error"] is None
        subscription = await socket.subscribe(api.GENERATION_UPDATED, {"id": created["id"]})
        await assert_reserved_while_running(stack, account, created["id"], available=1, cost=4)
        updates = [m["generationUpdated"] for m in await subscription.collect(within=20)]

    api.assert_monotonic(updates)
    assert all(u["attempts"] == 2 for u in updates), updates
    last = updates[-1]
    assert last["status"] == "COMPLETED", last
    assert len(last["outputs"]) == 4

    assert await api.balance(client, account) == {"available": 1, "reserved": 0, "total": 1}
    ledger = await api.transactions(client, account)
    mine = of_generation(ledger, created["id"])
    assert kinds(mine) == ["RESERVE", "RELEASE", "RESERVE", "CAPTURE"]
    assert api.ledger_sum(mine) == -4
    assert api.ledger_sum(ledger) == 1


async def test_socket_auth_is_enforced(stack: Running) -> None:
    bad = await close_code_of(stack.ws_url, {"authorization": "Bearer not-a-real-token"})
    assert bad == 4403
    missing = await close_code_of(stack.ws_url, {})
    assert missing == 4403
    silent = await close_code_of(stack.ws_url, None, within=10)
    assert silent == 4408


async def test_my_generations_and_balance_streams(stack: Running) -> None:
    client = stack.client
    account = await api.register(client)
    async with await GraphQLSocket.open(stack.ws_url, account.token) as socket:
        mine = await socket.subscribe(api.MY_GENERATIONS)
        balances = await socket.subscribe(api.BALANCE_CHANGED)
        opened = await balances.next()
        assert opened is not None, "creditBalanceChanged completed without a message"
        first_balance = opened["creditBalanceChanged"]
        assert first_balance == {
            "available": 5,
            "reserved": 0,
            "total": 5,
            "version": first_balance["version"],
        }

        created = await api.create(client, account)
        updates = [
            m["myGenerations"]
            for m in await mine.collect_until(
                lambda m: (
                    m["myGenerations"]["id"] == created["id"]
                    and m["myGenerations"]["status"] in FINAL
                ),
                within=20,
            )
        ]
        later = [
            m["creditBalanceChanged"]
            for m in await balances.collect_until(
                lambda m: (
                    m["creditBalanceChanged"]["reserved"] == 0
                    and m["creditBalanceChanged"]["available"] == 4
                ),
                within=20,
            )
        ]
        await mine.stop()
        await balances.stop()

    assert {u["id"] for u in updates} == {created["id"]}
    api.assert_monotonic(updates)
    assert updates[-1]["status"] == "COMPLETED"
    assert len(updates[-1]["outputs"]) == 1

    versions = [first_balance["version"]] + [b["version"] for b in later]
    assert versions == sorted(set(versions)), versions
    for b in later:
        assert b["total"] == b["available"] + b["reserved"]
    assert later[-1] == {"available": 4, "reserved": 0, "total": 4, "version": versions[-1]}


async def test_health_readiness_and_request_ids(stack: Running) -> None:
    http = stack.client.http
    health = await http.get("/healthz")
    assert health.status_code == 200
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["checks"]
    assert set(body["checks"].values()) == {"ok"}, body

    responses = [
        health,
        ready,
        await http.post("/graphql", json={"query": "{ models { id } }"}),
        await http.post("/graphql", json={"query": "{ me { id } }"}),
        await http.get("/graphql", headers={"Accept": "text/html"}),
        await http.get("/media/does-not-exist.png"),
        await http.get("/no-such-route"),
    ]
    for response in responses:
        assert response.headers.get("x-request-id"), (response.request.url, response.headers)
    assert len({r.headers["x-request-id"] for r in responses}) == len(responses)

    given = f"e2e-{uuid.uuid4().hex}"
    echoed = await http.get("/healthz", headers={"X-Request-ID": given})
    assert echoed.headers["x-request-id"] == given


async def test_websocket_handshake_carries_request_id(stack: Running) -> None:
    """web.middleware.RequestId: "Gives every HTTP request and socket an id (or keeps the caller's
    X-Request-ID) and returns it in the X-Request-ID header". The upgrade answer is an HTTP
    response too."""
    generated = await handshake(stack.ws_url, {})
    assert generated.get("x-request-id"), dict(generated)
    given = f"e2e-{uuid.uuid4().hex}"
    echoed = await handshake(stack.ws_url, {"X-Request-ID": given})
    assert echoed.get("x-request-id") == given, dict(echoed)


async def test_other_users_generations_are_invisible(stack: Running) -> None:
    client = stack.client
    owner = await api.register(client)
    stranger = await api.register(client)
    created = await api.create(client, owner)

    assert await api.generation(client, stranger, created["id"]) is None
    error = await client.error(api.CANCEL, {"id": created["id"]}, stranger.token)
    assert error["extensions"]["code"] == "NOT_FOUND", error
    error = await client.error(api.RETRY, {"id": created["id"]}, stranger.token)
    assert error["extensions"]["code"] == "NOT_FOUND", error
    assert await api.my_generations(client, stranger) == []

    async with await GraphQLSocket.open(stack.ws_url, stranger.token) as socket:
        subscription = await socket.subscribe(api.GENERATION_UPDATED, {"id": created["id"]})
        kind, payload = await subscription.receive()
    # A resolver error arrives as a `next` carrying errors, a request error as `error`.
    assert kind in ("next", "error"), (kind, payload)
    errors = payload["errors"] if kind == "next" else payload
    assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], payload
    if kind == "next":
        assert payload["data"] is None

    finished = (await api.watch(stack.ws_url, owner, created["id"]))[-1]
    assert finished["status"] == "COMPLETED"
    assert await api.balance(client, stranger) == {"available": 5, "reserved": 0, "total": 5}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"numOutputs": 9}, "numOutputs"),
        ({"prompt": ""}, "prompt"),
        ({"width": 10}, "width"),
        ({"model": "no-such-model"}, "model"),
    ],
    ids=["numOutputs", "prompt", "width", "model"],
)
async def test_validation_errors_name_the_field(
    stack: Running, overrides: dict, field: str
) -> None:
    client = stack.client
    account = await api.register(client)
    error = await client.error(api.CREATE, {"input": api.image_input(**overrides)}, account.token)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["field"] == field, error
    assert error["message"]
    assert await api.my_generations(client, account) == []
    assert await api.balance(client, account) == {"available": 5, "reserved": 0, "total": 5}


async def test_duplicate_run_messages_do_nothing_twice(stack: Running) -> None:
    if stack.kind != "production":
        pytest.skip("needs the Redis broker and separate worker processes")
    client = stack.client
    account = await api.register(client)
    created = await api.create(client, account)
    finished = (await api.watch(stack.ws_url, account, created["id"]))[-1]
    assert finished["status"] == "COMPLETED"
    ledger_before = await api.transactions(client, account)
    balance_before = await api.balance(client, account)

    broker = RedisBroker(url=stack.stack.redis_url, namespace=REDIS_NAMESPACE)
    try:
        for _ in range(2):
            broker.enqueue(
                dramatiq.Message(
                    queue_name="default",
                    actor_name="generation.run",
                    args=(created["id"],),
                    kwargs={},
                    options={},
                )
            )
        # join() returns once the queue holds no message, delivered or acknowledged-pending.
        await asyncio.to_thread(broker.join, "default", timeout=20_000)
    finally:
        broker.close()
    await asyncio.sleep(0.5)

    after = await api.generation(client, account, created["id"])
    assert after["status"] == "COMPLETED"
    assert after["version"] == finished["version"]
    assert after["attempts"] == 1
    assert after["outputs"] == finished["outputs"]
    assert await api.transactions(client, account) == ledger_before
    assert await api.balance(client, account) == balance_before


async def test_worker_shutdown_does_not_strand_running_generations(stack: Running) -> None:
    """A worker stopped with SIGTERM (a deploy, a scale-down) while it runs a generation must
    not leave that generation PROCESSING with its credits held until the sweeper's time
    limit: once workers are back it reaches a final state, charged or refunded exactly once.

    The stack's workers are swapped for ones whose local provider takes a second per step,
    so the generation is certainly still running when its worker is told to stop; the
    normal workers are restored at the end. Runs last among the production tests."""
    if stack.kind != "production":
        pytest.skip("needs separate worker processes")
    client = stack.client
    account = await api.register(client)
    normal = stack.stack.process("worker")
    slow_env = {**normal.env, "LOCAL_PROVIDER_DELAY": "1"}
    normal.popen.send_signal(signal.SIGTERM)
    slow = await asyncio.to_thread(stack.stack.restart, normal, slow_env)
    try:
        async with await GraphQLSocket.open(stack.ws_url, account.token) as socket:
            created = await api.create(client, account)
            subscription = await socket.subscribe(api.GENERATION_UPDATED, {"id": created["id"]})
            await subscription.collect_until(
                lambda m: m["generationUpdated"]["status"] == "PROCESSING"
            )
            slow.popen.send_signal(signal.SIGTERM)
            await asyncio.to_thread(slow.popen.wait, 30)
    finally:
        await asyncio.to_thread(stack.stack.restart, slow, normal.env)

    state = await api.generation(client, account, created["id"])
    try:
        updates = await api.watch(stack.ws_url, account, created["id"], within=10)
    except AssertionError as error:
        pytest.fail(
            f"the generation was left {state['status']} (stage {state['stage']!r}, credits "
            f"held: {await api.balance(client, account)}) after its worker was stopped: {error}"
        )
    last = updates[-1]
    assert last["status"] in FINAL, updates
    balance = await api.balance(client, account)
    mine = of_generation(await api.transactions(client, account), created["id"])
    if last["status"] == "COMPLETED":
        assert kinds(mine) == ["RESERVE", "CAPTURE"]
        assert balance == {"available": 4, "reserved": 0, "total": 4}
    else:
        assert kinds(mine) == ["RESERVE", "RELEASE"]
        assert balance == {"available": 5, "reserved": 0, "total": 5}
