"""The build DAG: its early steps are steps of the one runner, with their dependencies declared."""

from __future__ import annotations

import pytest

from pipeline.image.engine import connect
from pipeline.image.prepare import release_steps, workdir_held


@pytest.mark.docker
def test_each_early_step_waits_only_for_what_it_needs(layout):
    layout.release("2025.2", {"demo": "2.0.1", "other": "1.0.0", "oslo.lib": "1.0.0"}, services=["demo", "other"])
    project = layout.project()
    with workdir_held() as held:
        steps = {s.name: s for s in release_steps(project, project.services("2025.2", ["demo"]), ["demo"],
                                                  connect(project.settings), held)}
    assert steps["workdir-lock"].inline and steps["workdir-unlock"].inline
    assert steps["fetch:demo"].io and steps["patch:demo"].after == ("fetch:demo",)
    assert set(steps["sources"].after) == {"fetch:demo", "fetch:other", "fetch:oslo.lib"}
    # Every service's lock is resolved with the others' (the release layers share them).
    assert set(steps["dependencies"].after) == {"sources", "constraints", "patch:demo", "patch:other", "patch:oslo.lib"}
    assert set(steps["tree:demo"].after) == {"dependencies", "bases"}
    assert set(steps["plan:demo"].after) == {"release-layers", "tree:demo", "tree:oslo.lib"}
    assert "plan:other" not in steps and "tree:other" not in steps
    assert {"plan:demo", "tree:demo", "tree:oslo.lib"} <= set(steps["workdir-unlock"].after)
