"""Driving Kiln's GraphiQL page as a person does: click an editor, put text in, press run,
read the response pane. The editors are CodeMirror 5; text goes in as one text input (what a
paste does), so the editor's bracket closing and indentation keys do not add to it, and
each editor is checked to hold exactly what was put in."""

from __future__ import annotations

import json
from typing import Any

from playwright.async_api import Page

QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
# The Variables and Headers editors share the tools pane; the tab shown is not hidden.
TOOL_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
HEADERS_TAB = '.graphiql-editor-tools button[data-name="headers"]'
RUN_BUTTON = ".graphiql-execute-button"
RESPONSE = ".graphiql-response .CodeMirror"

_VALUE = "(element) => element.CodeMirror.getValue()"
# GraphiQL takes in an edit 100 ms later (its parse of the document, the page's URL): a person
# never presses run sooner, so neither does the test.
_EDIT_TAKEN = "(text) => new URLSearchParams(location.search).get('q') === text"
_RESPONSE_HAS = """(needles) => {
  const editor = document.querySelector(".graphiql-response .CodeMirror");
  const text = editor ? editor.CodeMirror.getValue() : "";
  return needles.some((needle) => text.includes(needle));
}"""


class GraphiQL:
    def __init__(self, page: Page) -> None:
        self.page = page

    async def open(self, base_url: str) -> None:
        await self.page.goto(f"{base_url}/graphql")
        await self.page.locator(QUERY_EDITOR).wait_for(state="visible")

    async def _put(self, selector: str, text: str) -> None:
        editor = self.page.locator(selector)
        await editor.click()
        await self.page.keyboard.press("ControlOrMeta+A")
        await self.page.keyboard.insert_text(text)
        held = await editor.evaluate(_VALUE)
        assert held == text, f"the editor holds {held!r}, not what was typed: {text!r}"

    async def type_query(self, text: str) -> None:
        await self._put(QUERY_EDITOR, text)
        await self.page.wait_for_function(_EDIT_TAKEN, arg=text)

    async def type_headers(self, text: str) -> None:
        await self.page.locator(HEADERS_TAB).click()
        await self._put(TOOL_EDITOR, text)

    async def run(self) -> None:
        await self.page.locator(RUN_BUTTON).click()

    async def response_with(self, *needles: str) -> Any:
        """Waits until the response pane shows any of `needles`, then reads it as JSON."""
        await self.page.wait_for_function(_RESPONSE_HAS, arg=list(needles))
        text = await self.page.locator(RESPONSE).evaluate(_VALUE)
        return json.loads(text)

    async def run_for_data(self, query: str, key: str) -> Any:
        """Types `query`, runs it and returns data[key] (failing on any error)."""
        await self.type_query(query)
        await self.run()
        body = await self.response_with(f'"{key}"', '"errors"')
        assert not body.get("errors"), body
        return body["data"][key]
