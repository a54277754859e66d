"""The README's first generation, typed into GraphiQL in real Chromium against the real
stacks, with every request to anything but Kiln blocked: the page needs no CDN, and its
subscription authenticates with the Headers tab as the README writes it."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import Browser

from tests.e2e.browser.chromium import offline_context
from tests.e2e.browser.graphiql import GraphiQL
from tests.e2e.browser.readme import readme_walkthrough
from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_the_readme_walkthrough_works_in_graphiql_with_nothing_but_kiln(
    stack: Running, browser: Browser
) -> None:
    walkthrough = readme_walkthrough()
    context, traffic = await offline_context(browser, stack.base_url)
    try:
        graphiql = GraphiQL(await context.new_page())
        await graphiql.open(stack.base_url)

        # 1. Register, copy the token into the Headers tab.
        registered = await graphiql.run_for_data(walkthrough.register, "register")
        assert registered["user"]["credits"]["available"] == 5, registered
        await graphiql.type_headers(walkthrough.headers_with(registered["token"]))

        # 2. Create a generation: queued, one credit held.
        created = await graphiql.run_for_data(walkthrough.create, "createGeneration")
        assert created["status"] == "QUEUED", created

        # 3. Paste its id into the subscription and watch it finish.
        await graphiql.type_query(walkthrough.subscribe_to(created["id"]))
        await graphiql.run()
        body = await graphiql.response_with('"COMPLETED"', '"FAILED"', '"errors"')
        assert not body.get("errors"), body
        finished = body["data"]["generationUpdated"]
        assert finished["status"] == "COMPLETED", finished
        output = finished["outputs"][0]
        assert (output["contentType"], output["width"], output["height"]) == (
            "image/png",
            512,
            384,
        )

        # Open the output URL: it's the PNG.
        image_page = await context.new_page()
        response = await image_page.goto(output["url"])
        assert response is not None and response.status == 200, output["url"]
        assert response.headers["content-type"] == "image/png"
        assert (await response.body()).startswith(PNG_SIGNATURE)
        shown = await image_page.locator("img").evaluate(
            "(img) => img.complete && [img.naturalWidth, img.naturalHeight]"
        )
        assert shown == [512, 384]

        # 4. Look around: every query of the last step answers.
        await graphiql.type_query(walkthrough.look_around)
        await graphiql.run()
        around = await graphiql.response_with('"creditTransactions"', '"errors"')
        assert not around.get("errors"), around
        assert around["data"]["me"]["email"] == registered["user"]["email"]
    finally:
        await context.close()

    assert traffic.foreign == [], f"the page asked for things beyond Kiln: {traffic.foreign}"
    assert traffic.sockets, "the subscription opened no socket"


async def test_a_refused_subscription_is_reported_at_once_without_retrying(
    stack: Running, browser: Browser
) -> None:
    walkthrough = readme_walkthrough()
    context, traffic = await offline_context(browser, stack.base_url)
    try:
        graphiql = GraphiQL(await context.new_page())
        await graphiql.open(stack.base_url)
        await graphiql.type_headers(walkthrough.headers_with("not-a-valid-token"))
        await graphiql.type_query(walkthrough.subscribe_to(str(uuid.uuid4())))
        await graphiql.run()
        body = await graphiql.response_with("4403")
    finally:
        await context.close()

    assert "Socket closed with event 4403 Forbidden" in body["errors"][0]["message"], body
    # graphql-ws would retry a 4403 five times (about 45 s) before GraphiQL said anything.
    assert len(traffic.sockets) == 1, traffic.sockets
    assert traffic.foreign == []
