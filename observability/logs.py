"""Structured logs: one JSON object per line, carrying the request id, user id, generation id
and provider of whatever the current task is doing.

Those four live in context variables, so they follow the work into the tasks it starts and never
leak between concurrent requests. The server binds the request id, the GraphQL layer the user,
the generation lifecycle the generation and the runner the provider."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

FIELDS = ("request_id", "user_id", "generation_id", "provider")
_vars: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"kiln_log_{name}", default=None) for name in FIELDS
}


def bind(**fields: object) -> dict[str, Token[str | None]]:
    """Set context fields for the rest of the current task (and the tasks it starts)."""
    tokens = {}
    for name, value in fields.items():
        tokens[name] = _vars[name].set(None if value is None else str(value))
    return tokens


def unbind(tokens: dict[str, Token[str | None]]) -> None:
    for name, token in tokens.items():
        _vars[name].reset(token)


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    tokens = bind(**fields)
    try:
        yield
    finally:
        unbind(tokens)


def current() -> dict[str, str]:
    """The context fields that are set, e.g. {"request_id": "...", "user_id": "..."}."""
    values = {name: var.get() for name, var in _vars.items()}
    return {name: value for name, value in values.items() if value is not None}


class ContextFilter(logging.Filter):
    """Copies the context fields onto every record (the JSON formatter emits them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class _KilnHandler(logging.StreamHandler):
    """Marks the handler Kiln installed, so configuring twice replaces it instead of doubling."""


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        # uvicorn repeats its message with terminal colour codes; one message is enough.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


def _switched_off(logger: logging.Logger) -> bool:
    return not logger.handlers and not logger.propagate


def setup_logging(*, level: str = "INFO", fmt: str = "json", keep_handlers: bool = False) -> None:
    """Log to stderr, as JSON lines (fmt="json") or text. Handlers someone else installed on the
    root logger (pytest's, an embedding application's) are left alone, like basicConfig does.
    uvicorn's own loggers are routed through the same handler so every line has one shape.

    `keep_handlers` is for a `dramatiq tasks` worker process: Dramatiq's handler on the root
    logger carries each line to the parent process through a pipe (so lines of several
    processes never mangle each other), and it stays in place; in JSON it writes Kiln's lines
    (with the context fields) instead of Dramatiq's text."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _KilnHandler):
            root.removeHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO: a line per provider call and download, which Kiln's
    # own API call log already records (with timings and outcomes).
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    if root.handlers:
        if keep_handlers and fmt == "json":
            for handler in root.handlers:
                _write_json(handler)
        return
    handler = _KilnHandler(sys.stderr)
    if fmt == "json":
        _write_json(handler)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            uvicorn_logger = logging.getLogger(name)
            if _switched_off(uvicorn_logger):
                # `--no-access-log`: uvicorn left the logger without handlers and not
                # propagating. Routing it here would turn the access log back on (a JSON
                # line per request, ~3% of the API's CPU under load) against the operator.
                continue
            uvicorn_logger.handlers = []
            uvicorn_logger.propagate = True
    else:
        handler.addFilter(ContextFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)


def _write_json(handler: logging.Handler) -> None:
    """JSON lines with the context fields, whatever the handler wrote before."""
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())
    handler.setFormatter(json_formatter())
