"""The shipped GitHub Actions workflow: valid (actionlint), and only calls the tasks a person runs."""

from __future__ import annotations

import re
import shutil
import subprocess

import yaml
from conftest import REPO_ROOT

from pipeline import ci
from pipeline.core.releases import load_project
from pipeline.core.settings import PROJECT_ROOT, Settings

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "images.yml"
ALLOWED = ("scripts/setup", "invoke ci.matrix ", "invoke testapply ", "invoke build ", "invoke manifest",
           "invoke advisories", "invoke smoke ")


def test_actionlint_accepts_the_workflow():
    binary = shutil.which("actionlint")
    assert binary, "actionlint is not installed (pip install -e '.[test]' installs it)"
    result = subprocess.run([binary, "-no-color", str(WORKFLOW)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_steps_only_run_tasks_and_read_what_ci_matrix_writes(tmp_path):
    workflow = yaml.safe_load(WORKFLOW.read_text())
    commands = [line.strip() for job in workflow["jobs"].values() for step in job["steps"]
                for line in step.get("run", "").splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands and all(c.startswith(ALLOWED) for c in commands), commands
    for task in {c.split()[1] for c in commands if c.startswith("invoke ")}:
        assert subprocess.run(["invoke", "-r", str(REPO_ROOT), "--help", task], capture_output=True).returncode == 0, task
    used = set(re.findall(r"(?<![\w.])matrix\.(\w+)", WORKFLOW.read_text()))
    project = load_project(Settings.from_mapping({"workdir": str(tmp_path / "build")}, root=PROJECT_ROOT))
    entry = ci.matrix(project, ci.NO_COMMIT, "HEAD").include[0]  # every image of this repository
    assert used <= set(entry) and "testapply" in used
