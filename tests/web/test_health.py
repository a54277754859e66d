"""/metrics through the ASGI app: counters move with requests, generations, provider calls and
recorded errors; the queue depth is read at scrape time. Multiprocess mode sums processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from models.error_event import ErrorCategory, Severity
from services import generations
from services.error_events import Occurrence, record
from services.generations import NewGeneration
from services.runner import run_generation
from tests.support.app import Samples, app_client, parse, value
from tests.support.generations import CATALOGUE, registry
from web.middleware import SocketGauge


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_metrics_move_with_the_work(backend, make_user, monkeypatch):
    user = await make_user(credits=5)
    async with app_client(backend, monkeypatch) as client:
        before = await scrape(client)

        ok = await client.post("/graphql", json={"query": "{ models { id } }"})
        assert ok.status_code == 200 and "errors" not in ok.json()
        denied = await client.post("/graphql", json={"query": "{ me { id } }"})
        assert denied.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert denied.headers["x-request-id"]

        done = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
        broken = await generations.create_generation(
            user, NewGeneration(prompt="x", model="local-broken"), CATALOGUE
        )
        queued = await generations.create_generation(user, NewGeneration(prompt="x"), CATALOGUE)
        await run_generation(done.id, CATALOGUE, registry(), backend.store)
        await run_generation(broken.id, CATALOGUE, registry(), backend.store)
        await record(Occurrence(Severity.CRITICAL, ErrorCategory.SYSTEM, "metrics test", "MT"))

        after = await scrape(client)
        await generations.cancel(user, queued.id)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("kiln_graphql_requests_total", operation_type="query", code="OK") == 1
    assert moved("kiln_graphql_requests_total", operation_type="query", code="UNAUTHENTICATED") == 1
    assert moved("kiln_graphql_request_duration_seconds_count", operation_type="query") == 2
    assert moved("kiln_generation_transitions_total", status="PROCESSING") == 2
    assert moved("kiln_generation_transitions_total", status="COMPLETED") == 1
    assert moved("kiln_generation_transitions_total", status="FAILED") == 1
    assert moved("kiln_generation_duration_seconds_count", model="local-image", status="COMPLETED")
    # Every attempt counts (the routing may retry a failing call).
    assert moved("kiln_provider_calls_total", provider="local", outcome="ok") == 1
    assert moved("kiln_provider_calls_total", provider="local", outcome="error") >= 1
    assert moved("kiln_provider_errors_total", provider="local", code="PROVIDER_ERROR") >= 1
    assert moved("kiln_provider_call_duration_seconds_count", provider="local") >= 2
    assert moved("kiln_error_occurrences_total", severity="CRITICAL", category="SYSTEM") == 1
    assert moved("kiln_error_occurrences_total", severity="ERROR", category="GENERATION") == 1
    assert value(after, "kiln_queue_depth", status="QUEUED") >= 1
    assert ("kiln_open_breakers", frozenset()) in after
    assert ("kiln_websocket_connections", frozenset()) in after


async def test_metrics_can_require_a_token(backend, monkeypatch):
    async with app_client(backend, monkeypatch, metrics_token="s3cret") as client:
        assert (await client.get("/metrics")).status_code == 401
        allowed = await client.get("/metrics", headers={"authorization": "Bearer s3cret"})
        assert allowed.status_code == 200


async def test_open_sockets_are_counted():
    from observability.metrics import WEBSOCKET_CONNECTIONS

    seen: list[float] = []

    async def app(scope, receive, send) -> None:
        seen.append(WEBSOCKET_CONNECTIONS._value.get())

    before = WEBSOCKET_CONNECTIONS._value.get()
    await SocketGauge(app)({"type": "websocket"}, None, None)  # type: ignore[arg-type]
    assert seen == [before + 1]
    assert WEBSOCKET_CONNECTIONS._value.get() == before


def test_multiprocess_mode_sums_every_process(tmp_path: Path):
    """Each uvicorn worker writes its samples to PROMETHEUS_MULTIPROC_DIR; any one renders all."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    root = Path(__file__).resolve().parents[2]

    def python(code: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", code], cwd=root, env=env, check=True, capture_output=True
        ).stdout.decode()

    bump = (
        "from observability import metrics; metrics.ERROR_OCCURRENCES.labels('ERROR', 'API').inc(3)"
    )
    python(bump)
    python(bump)
    text = python(
        "import sys; from observability import metrics; "
        "sys.stdout.write(metrics.render([metrics.gauge('kiln_queue_depth', 'd', ['status'], "
        "{('QUEUED',): 4.0})]).decode())"
    )
    samples = parse(text)
    assert value(samples, "kiln_error_occurrences_total", severity="ERROR", category="API") == 6
    assert value(samples, "kiln_queue_depth", status="QUEUED") == 4
