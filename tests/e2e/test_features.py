"""The generation features apps sell, end to end on both stacks: the multi-view approval
workflow, the response cache, batches, VIDEO and TEXT."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from PIL import Image

from tests.e2e import api
from tests.e2e.conftest import Running
from tests.e2e.stack import E2E_METRICS_TOKEN

pytestmark = pytest.mark.e2e

ADJUST = """mutation($u: ID!, $a: Int!) {
  adjustCredits(userId: $u, amount: $a, reason: "e2e features") { available }
}"""
APPROVE = f"mutation($id: ID!) {{ approveGeneration(id: $id) {{ {api.GENERATION_FIELDS} }} }}"
CHANGES = (
    f"mutation($id: ID!, $f: String!) {{ requestChanges(id: $id, feedback: $f) "
    f"{{ {api.GENERATION_FIELDS} }} }}"
)
FAMILY = f"""query($id: ID!) {{ generation(id: $id) {{ {api.GENERATION_FIELDS}
  children {{ id status stage params outputs {{ index url }} parent {{ id }} }} }} }}"""


async def until(
    stack: Running, account: api.Account, generation_id: str, status: str, within: float = 30
) -> list[dict[str, Any]]:
    """generationUpdated messages up to the first with `status` (it may not be final)."""
    async with await api.GraphQLSocket.open(stack.ws_url, account.token) as socket:
        subscription = await socket.subscribe(api.GENERATION_UPDATED, {"id": generation_id})
        messages = await subscription.collect_until(
            lambda m: m["generationUpdated"]["status"] in (status, "FAILED", "CANCELED"), within
        )
    return [m["generationUpdated"] for m in messages]


async def funded(stack: Running, credits: int) -> api.Account:
    account = await api.register(stack.client)
    await stack.client.data(ADJUST, {"u": account.user_id, "a": credits - 5}, stack.admin_token)
    return account


async def workflow(stack: Running, account: api.Account, **overrides: Any) -> dict[str, Any]:
    return await api.create(
        stack.client,
        account,
        kind="MULTI_VIEW",
        width=96,
        height=96,
        prompt="a brown leather backpack with brass buckles",
        seed=7,
        **overrides,
    )


async def test_the_multi_view_workflow_with_two_rounds_of_changes(stack: Running):
    account = await funded(stack, 10)
    parent = await workflow(stack, account)
    assert (parent["status"], parent["cost"]) == ("QUEUED", 3)
    assert (await until(stack, account, parent["id"], "AWAITING_APPROVAL"))[-1][
        "status"
    ] == "AWAITING_APPROVAL"
    for round_ in (1, 2):
        changed = await stack.client.data(
            CHANGES, {"id": parent["id"], "f": f"greener {round_}"}, account.token
        )
        assert changed["requestChanges"]["cost"] == 3 + round_
        last = (await until(stack, account, parent["id"], "AWAITING_APPROVAL"))[-1]
        assert last["status"] == "AWAITING_APPROVAL" and len(last["outputs"]) == 1
    error = await stack.client.error(CHANGES, {"id": parent["id"], "f": ""}, account.token)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"

    await stack.client.data(APPROVE, {"id": parent["id"]}, account.token)
    error = await stack.client.error(APPROVE, {"id": parent["id"]}, account.token)
    assert error["extensions"]["code"] == "CONFLICT"  # approved twice
    updates = await api.watch(stack.ws_url, account, parent["id"], within=60)
    api.assert_monotonic(updates)
    last = updates[-1]
    assert last["status"] == "COMPLETED", last
    assert [o["index"] for o in last["outputs"]] == [0, 1, 2, 3, 4]

    family = (await stack.client.data(FAMILY, {"id": parent["id"]}, account.token))["generation"]
    children = family["children"]
    assert sorted(c["params"]["view"] for c in children) == ["back", "bottom", "side", "top"]
    assert all(c["status"] == "COMPLETED" and c["parent"]["id"] == parent["id"] for c in children)
    assert sorted(c["outputs"][0]["index"] for c in children) == [1, 2, 3, 4]
    mine = [
        e
        for e in await api.transactions(stack.client, account)
        if e["generationId"] == parent["id"]
    ]
    assert [(e["kind"], e["amount"]) for e in mine] == [
        ("RESERVE", -3),
        ("RESERVE", -1),
        ("RESERVE", -1),
        ("CAPTURE", 0),
    ]
    assert await api.balance(stack.client, account) == {"available": 5, "reserved": 0, "total": 5}


async def test_a_workflow_whose_side_view_fails_releases_everything(stack: Running):
    account = await api.register(stack.client)
    parent = await workflow(stack, account, model="side-fails-image")
    await until(stack, account, parent["id"], "AWAITING_APPROVAL")
    await stack.client.data(APPROVE, {"id": parent["id"]}, account.token)
    last = (await api.watch(stack.ws_url, account, parent["id"], within=60))[-1]
    assert (last["status"], last["error"]["code"]) == ("FAILED", "WORKFLOW_VIEW_FAILED")
    children = (await stack.client.data(FAMILY, {"id": parent["id"]}, account.token))["generation"][
        "children"
    ]
    statuses = {c["params"]["view"]: c["status"] for c in children}
    assert statuses["side"] == "FAILED"
    assert set(statuses.values()) <= {"FAILED", "COMPLETED", "CANCELED"}
    assert await api.balance(stack.client, account) == {"available": 5, "reserved": 0, "total": 5}


async def test_cancelling_while_the_views_run(stack: Running):
    account = await api.register(stack.client)
    parent = await workflow(stack, account, model="local-steady")
    await until(stack, account, parent["id"], "AWAITING_APPROVAL")
    await stack.client.data(APPROVE, {"id": parent["id"]}, account.token)
    async with asyncio.timeout(30):
        while True:
            family = (await stack.client.data(FAMILY, {"id": parent["id"]}, account.token))[
                "generation"
            ]
            if any(c["status"] == "PROCESSING" for c in family["children"]):
                break
            await asyncio.sleep(0.1)
    cancelled = await stack.client.data(api.CANCEL, {"id": parent["id"]}, account.token)
    assert cancelled["cancelGeneration"]["status"] == "CANCELED"
    await asyncio.sleep(1.5)  # views still running finish their step and stop
    family = (await stack.client.data(FAMILY, {"id": parent["id"]}, account.token))["generation"]
    assert family["status"] == "CANCELED"
    assert {c["status"] for c in family["children"]} == {"CANCELED"}
    assert await api.balance(stack.client, account) == {"available": 5, "reserved": 0, "total": 5}


async def test_a_cache_hit_returns_in_one_message_with_the_original_outputs(stack: Running):
    account = await api.register(stack.client)
    request = {"prompt": "a glass teapot on a shelf", "seed": 11, "width": 64, "height": 64}
    first = await api.create(stack.client, account, **request)
    original = (await api.watch(stack.ws_url, account, first["id"]))[-1]
    assert original["status"] == "COMPLETED"
    again = await api.create(stack.client, account, **request)
    assert again["status"] == "COMPLETED" and again["cost"] == 0
    updates = await api.watch(stack.ws_url, account, again["id"])
    assert len(updates) == 1 and updates[0]["status"] == "COMPLETED"
    assert [o["url"] for o in updates[0]["outputs"]] == [o["url"] for o in original["outputs"]]
    assert (await api.balance(stack.client, account))["available"] == 4
    scrape = {"Authorization": f"Bearer {E2E_METRICS_TOKEN}"}  # production's /metrics needs it
    metrics = (await stack.client.http.get("/metrics", headers=scrape)).text
    assert 'kiln_response_cache_lookups_total{result="hit"}' in metrics


async def test_batches_video_and_text(stack: Running):
    account = await funded(stack, 10)
    batch = await api.create(stack.client, account, numOutputs=3, width=64, height=64)
    video = await api.create(stack.client, account, kind="VIDEO", width=64, height=64)
    text = await api.create(stack.client, account, kind="TEXT", prompt="a story about a fox")
    assert (batch["cost"], video["cost"], text["cost"]) == (3, 3, 1)
    finals = {
        name: (await api.watch(stack.ws_url, account, g["id"]))[-1]
        for name, g in (("batch", batch), ("video", video), ("text", text))
    }
    assert all(f["status"] == "COMPLETED" for f in finals.values()), finals
    assert [o["index"] for o in finals["batch"]["outputs"]] == [0, 1, 2]
    [clip] = finals["video"]["outputs"]
    assert clip["contentType"] == "image/webp"
    body = (await stack.client.http.get(clip["url"])).content
    with Image.open(io.BytesIO(body)) as animation:
        assert getattr(animation, "n_frames", 1) > 1
    [story] = finals["text"]["outputs"]
    assert story["contentType"] == "text/plain" and story["text"]
    assert await api.balance(stack.client, account) == {"available": 3, "reserved": 0, "total": 3}
