"""Log lines are JSON objects carrying the request, user, generation and provider in effect."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from types import SimpleNamespace

import httpx

import runtime
from observability import logs
from server import create_app
from services import auth
from services.catalogue import load_catalogue
from tests.support.generations import registry


def capture() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.json_formatter())
    logger = logging.getLogger(f"kiln.test.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_log_line_is_one_json_object_with_the_context():
    logger, stream = capture()
    with logs.bound(request_id="req-1", user_id="user-1"):
        with logs.bound(generation_id="gen-1", provider="local"):
            logger.info("provider answered in %d ms", 12)
        logger.warning("after the call")
    logger.info("outside", extra={"color_message": "\x1b[36moutside\x1b[0m"})
    first, second, third = lines(stream)
    assert first["message"] == "provider answered in 12 ms"
    assert first["level"] == "INFO" and first["logger"].startswith("kiln.test")
    assert "time" in first
    assert (first["request_id"], first["user_id"]) == ("req-1", "user-1")
    assert (first["generation_id"], first["provider"]) == ("gen-1", "local")
    assert second["request_id"] == "req-1" and "provider" not in second
    assert not {"request_id", "user_id", "generation_id", "provider"} & set(third)
    assert "color_message" not in third


def test_exceptions_are_logged_inside_the_json_object():
    logger, stream = capture()
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it broke")
    (line,) = lines(stream)
    assert "ValueError: boom" in line["exc_info"]


async def test_context_follows_the_work_into_tasks_and_not_across_requests():
    async def request(request_id: str) -> dict[str, str]:
        with logs.bound(request_id=request_id):
            await asyncio.sleep(0)
            return await asyncio.create_task(asyncio.sleep(0, result=logs.current()))

    results = await asyncio.gather(*(request(f"r{n}") for n in range(5)))
    assert [r["request_id"] for r in results] == [f"r{n}" for n in range(5)]
    assert "request_id" not in logs.current()


async def test_requests_log_with_their_request_and_user_ids(backend, make_user, monkeypatch):
    """Through the real app: the request id from X-Request-ID and the authenticated user are
    on the lines that resolvers log."""
    user = await make_user()
    logger, stream = capture()

    async def logged_get_balance(user_id):
        logger.info("reading a balance")
        raise RuntimeError("forced")

    monkeypatch.setattr("services.credits.get_balance", logged_get_balance)
    monkeypatch.setattr(
        runtime,
        "_current",
        SimpleNamespace(
            catalogue=load_catalogue(), settings=backend.settings, providers=registry()
        ),
    )
    app = create_app(backend.settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://kiln.test"
    ) as client:
        response = await client.post(
            "/graphql",
            json={"query": "{ creditBalance { available } }"},
            headers={
                "authorization": f"Bearer {auth.issue_token(user, backend.settings)}",
                "x-request-id": "req-from-client",
            },
        )
    # The INTERNAL error still carries the request id, in the body and the header.
    body = response.json()
    assert body["errors"][0]["extensions"] == {"code": "INTERNAL", "requestId": "req-from-client"}
    assert response.headers["x-request-id"] == "req-from-client"
    (line,) = lines(stream)
    assert (line["request_id"], line["user_id"]) == ("req-from-client", str(user.id))


def test_setup_logging_leaves_foreign_handlers_alone_and_does_not_double():
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        root.handlers = []
        logs.setup_logging(level="WARNING", fmt="json")
        logs.setup_logging(level="WARNING", fmt="json")
        assert len(root.handlers) == 1 and root.level == logging.WARNING
        foreign = logging.NullHandler()
        root.handlers = [foreign]
        logs.setup_logging(fmt="text")
        assert root.handlers == [foreign]
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)


def test_uvicorn_access_log_stays_off_when_uvicorn_was_told_so():
    """`uvicorn --no-access-log` strips the access logger's handlers and stops it propagating;
    Kiln's JSON logging routes uvicorn's loggers through its handler but must not revive it.
    uvicorn decides per connection with `hasHandlers()`."""
    root, access = logging.getLogger(), logging.getLogger("uvicorn.access")
    saved = (list(root.handlers), root.level, list(access.handlers), access.propagate)
    try:
        root.handlers = []
        access.handlers, access.propagate = [], False  # what --no-access-log leaves
        logs.setup_logging(fmt="json")
        assert not access.hasHandlers()
        root.handlers = []
        access.handlers, access.propagate = [logging.NullHandler()], False  # uvicorn's default
        logs.setup_logging(fmt="json")
        assert access.handlers == [] and access.propagate and access.hasHandlers()
    finally:
        root.handlers, access.handlers, access.propagate = saved[0], saved[2], saved[3]
        root.setLevel(saved[1])


def test_a_worker_process_keeps_dramatiqs_handler_and_writes_json_through_it():
    """`dramatiq tasks` gives each worker process a root handler that pipes lines to the parent
    (basicConfig with its text format); Kiln keeps it and writes its JSON lines through it."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    pipe = io.StringIO()
    dramatiqs = logging.StreamHandler(pipe)
    dramatiqs.setFormatter(logging.Formatter("[%(asctime)s] [PID %(process)d] %(message)s"))
    try:
        root.handlers = [dramatiqs]
        logs.setup_logging(level="INFO", fmt="json", keep_handlers=True)
        logs.setup_logging(level="INFO", fmt="json", keep_handlers=True)  # harmless again
        assert root.handlers == [dramatiqs]
        with logs.bound(generation_id="gen-7"):
            logging.getLogger("services.runner").warning("route failed")
        [line] = lines(pipe)
        assert (line["message"], line["generation_id"], line["level"]) == (
            "route failed",
            "gen-7",
            "WARNING",
        )
        assert len(dramatiqs.filters) == 1
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
