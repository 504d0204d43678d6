"""Service locks on real upstream input: the shipped 2025.2 series, its upper-constraints and PyPI."""

from __future__ import annotations

import pytest

from pipeline import constraints as constraints_stage
from pipeline import locks, series
from pipeline.wheels import Target, _run_uv

from test_images import cache, shipped  # noqa: F401 - cache: the session's package cache

TARGET = Target("3.11", "x86_64", 36)


@pytest.fixture
def release(tmp_path, cache):  # noqa: F811
    """The shipped configuration of 2025.2, with keystone, nova and oslo.messaging patched."""
    project = shipped(tmp_path / "build", cache)
    with locks.hold(project.layout.lock("2025.2"), "test"):
        trees = {t.component: t for t in series.patch(project, "2025.2", ("keystone", "nova", "oslo.messaging"), 3)}
        constraints_stage.build(project, "2025.2")
    return project, trees, project.layout.effective_constraints("2025.2").read_text()


@pytest.mark.network
def test_a_lock_for_another_python_does_not_fetch_an_interpreter(release, tmp_path):
    """uv would fetch a Python 3.13 from GitHub for it (5 s of retries where that is out of reach), every lock."""
    project, _, _ = release
    (tmp_path / "requirements.txt").write_text("six\n")
    result = _run_uv(["pip", "compile", "--verbose", "--python-version", "3.13", "--python-platform",
                      TARGET.uv_platform, str(tmp_path / "requirements.txt")], project)
    assert result.returncode == 0, result.stderr
    assert "six==" in result.stdout
    assert "Fetching requested Python" not in result.stderr
