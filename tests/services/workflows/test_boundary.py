"""The lifecycle knows no particular workflow: the runner and the sweeper reach workflows
only through services.workflows (its registry and hooks), so a second workflow is added
beside multi-view without touching them."""

from __future__ import annotations

import ast

import pytest

from models.generation import GenerationKind
from services import workflows
from services.workflows.base import Workflow
from tests.support.imports import ROOT, cycle_through, import_graph

LIFECYCLE = ["services.runner", "services.sweeper"]


@pytest.mark.parametrize("module", LIFECYCLE)
def test_the_lifecycle_imports_no_particular_workflow(module: str) -> None:
    imported = import_graph()[module]
    assert "services.workflows" in imported
    assert not [m for m in imported if m.startswith("services.workflows.")]


@pytest.mark.parametrize("module", LIFECYCLE)
def test_the_lifecycle_names_no_workflow_kind(module: str) -> None:
    source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
    names = {node.attr for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Attribute)}
    assert not names & {kind.name for kind in GenerationKind if kind in workflows.WORKFLOWS}


def test_every_registered_workflow_has_every_hook() -> None:
    hooks = [name for name in vars(Workflow) if not name.startswith("_") and name != "kind"]
    assert hooks
    for kind, workflow in workflows.WORKFLOWS.items():
        assert workflow.kind is kind
        assert all(callable(getattr(workflow, hook, None)) for hook in hooks)


@pytest.mark.parametrize(
    "module", ["services.workflows", "services.workflows.base", "services.workflows.multi_view"]
)
def test_no_import_cycle_goes_through_the_workflows(module: str) -> None:
    assert cycle_through(import_graph(), module) is None
