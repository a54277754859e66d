"""Provider routing's modules import one way: no module of it, nor the API call log that
reads its call context, is part of an import cycle (imports only made for type checking
count too: a cycle there is still two modules that cannot be understood one without the
other)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.imports import ROOT, cycle_through, import_graph

ROUTING = [
    "services.provider_routing",
    "services.provider_routing.call_context",
    "services.provider_routing.deps",
    "services.provider_routing.failover",
    "services.provider_routing.retries",
    "services.api_calls",
    "services.availability",
    "services.runner",
]


@pytest.mark.parametrize("module", ROUTING)
def test_no_import_cycle_goes_through(module: str) -> None:
    graph = import_graph()
    assert module in graph
    assert cycle_through(graph, module) is None


@pytest.mark.parametrize("module", ROUTING[:6])
def test_each_module_imports_on_its_own(module: str) -> None:
    # A fresh interpreter: nothing imported before it hides an order it depends on.
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
