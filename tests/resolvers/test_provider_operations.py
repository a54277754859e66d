"""What admins read about third-party providers: providerHealth and apiCallLogs. The built-in
`local` provider is no third-party API and appears in neither."""

from __future__ import annotations

import httpx

from models.user import Role
from providers.http import CallRecord, ProviderHTTP
from providers.openai import OpenAIProvider
from schema.build import build_schema
from services import auth
from services.api_calls import record_call
from services.breakers import BreakerPolicy
from services.catalogue import parse_catalogue
from tests.support.providers import provider_deps
from tests.support.schema import request_context

CATALOGUE = parse_catalogue(
    {
        "models": {
            "solo": {
                "kind": "IMAGE",
                "cost_per_output": 1,
                "default": True,
                "routes": [
                    {"provider": "openai", "model": "gpt-image-1"},
                    {"provider": "local", "model": "pattern-v1"},
                ],
            },
        }
    }
)


async def run(backend, user, query, deps, **variables):
    context = request_context(backend.settings, auth.issue_token(user, backend.settings))
    context.catalogue, context.providers = CATALOGUE, deps
    return await build_schema().execute(query, variable_values=variables, context_value=context)


async def test_health_logs_and_availability_follow_the_breakers(backend, make_user):
    admin, user = await make_user(role=Role.ADMIN), await make_user()
    openai = OpenAIProvider(
        ProviderHTTP("openai", httpx.AsyncClient(), record_call), "sk-test", "http://127.0.0.1:9"
    )
    deps = provider_deps(
        openai, breaker=BreakerPolicy(failure_threshold=2, min_calls=2, cooldown=60)
    )
    for ok, duration in [(True, 40), (True, 60), (False, 900)]:
        await record_call(
            CallRecord(
                "openai",
                "gpt-image-1",
                "POST",
                "https://api.openai.test/x",
                200 if ok else 503,
                duration,
                ok,
                None if ok else "boom",
            )
        )
    models = await run(backend, user, "{ models { id available } }", deps)
    assert models.data == {"models": [{"id": "solo", "available": True}]}

    health = await run(
        backend,
        admin,
        "{ providerHealth { provider circuit calls successRate p95LatencyMs lastError } }",
        deps,
    )
    assert health.errors is None and health.data is not None
    [remote] = health.data["providerHealth"]  # local is configured too, but no third party
    assert (remote["provider"], remote["circuit"], remote["lastError"]) == (
        "openai",
        "CLOSED",
        "boom",
    )
    assert remote["calls"] >= 3 and 0 < remote["successRate"] < 1
    assert remote["p95LatencyMs"] >= 60

    for _ in range(2):
        await deps.breakers.record("openai", ok=False)
        await deps.breakers.record("local", ok=False)
    models = await run(backend, user, "{ models { id available } }", deps)
    assert models.data == {"models": [{"id": "solo", "available": False}]}
    health = await run(backend, admin, "{ providerHealth { circuit } }", deps)
    assert health.data == {"providerHealth": [{"circuit": "OPEN"}]}

    logs = await run(
        backend,
        admin,
        '{ apiCallLogs(failedOnly: true, provider: "openai") '
        "{ edges { node { provider ok statusCode error durationMs } } } }",
        deps,
    )
    assert logs.data is not None
    nodes = [e["node"] for e in logs.data["apiCallLogs"]["edges"]]
    assert nodes and all(not n["ok"] for n in nodes)
    assert nodes[0] == {
        "provider": "openai",
        "ok": False,
        "statusCode": 503,
        "error": "boom",
        "durationMs": 900,
    }

    for query in ("{ providerHealth { provider } }", "{ apiCallLogs { edges { cursor } } }"):
        denied = await run(backend, user, query, deps)
        assert denied.errors and denied.errors[0].extensions["code"] == "FORBIDDEN"
