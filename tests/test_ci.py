"""ci.matrix: each rule on real commits of a temporary repository shaped like this one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Layout, invoke, run_git

from pipeline import ci
from pipeline.core.files import write_json


class Repo:
    """A project repository with two releases, a library, Dockerfiles and tool code, committed in git."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = Layout(root, root.parent / "upstream-none")
        for release in ("2025.2", "2026.1"):
            self.layout.release(release, {"nova": "32.2.0", "keystone": "28.0.0", "oslo.messaging": "17.1.0"},
                                services=["nova", "keystone"])
        self.write("releases/2025.2/upper-constraints.txt", "pbr===6.1.1\n")
        self.write("patches/nova/2025.2/0001-fix.patch", "nova fix\n")
        self.write("patches/keystone/2025.2/0001-fix.patch", "keystone fix\n")
        self.write("patches/oslo.messaging/2025.2/0001-fix.patch", "library fix\n")
        self.write("patches/nova/2026.1/0001-fix.patch", "nova fix\n")
        self.write("dockerfiles/service.Dockerfile", "FROM scratch\n")
        self.write("dockerfiles/base-runtime.Dockerfile", "FROM scratch\n")
        self.write("dockerfiles/venv-layer", "#!/bin/sh\n")
        self.write("pipeline/build.py", "# tool\n")
        self.write("README.md", "readme\n")
        run_git(root, "init", "-q")
        self.base = self.commit("Initial")

    def write(self, path: str, content: str) -> None:
        (self.root / path).parent.mkdir(parents=True, exist_ok=True)
        (self.root / path).write_text(content)

    def commit(self, message: str) -> str:
        run_git(self.root, "add", "-A")
        run_git(self.root, "commit", "-q", "--allow-empty", "-m", message)
        return run_git(self.root, "rev-parse", "HEAD")

    def change(self, *paths: str, remove: bool = False) -> str:
        for path in paths:
            if remove:
                (self.root / path).unlink()
            else:
                self.write(path, (self.root / path).read_text() + "# changed\n" if (self.root / path).exists() else "# new\n")
        return self.commit(f"change {' '.join(paths)}")

    def closure(self, release: str, service: str, libraries: list[str]) -> None:
        write_json(self.root / "build" / ".stamps" / "lock" / release / f"{service}.json",
                   {"tool": "x", "input_hash": "x", "result": {"service": service, "libraries": libraries, "files": []}})

    def matrix(self, base: str | None = None, head: str = "HEAD") -> ci.Matrix:
        return ci.matrix(self.layout.project(), base or "", head)


@pytest.fixture
def repo(tmp_path) -> Repo:
    return Repo(tmp_path / "project")


def pairs(result: ci.Matrix) -> dict[tuple[str, str], list[str]]:
    return {(e["release"], e["service"]): e["series"] for e in result.include}


def test_service_patch_affects_its_image_only(repo):
    repo.change("patches/nova/2025.2/0001-fix.patch")
    result = repo.matrix()
    assert pairs(result) == {("2025.2", "nova"): ["nova"]}
    (entry,) = result.include
    assert entry["testapply"] == "--release 2025.2 --component nova"
    assert entry["why"] == ["service patches: patches/nova/2025.2/0001-fix.patch"]


def test_library_patch_follows_the_recorded_closures(repo):
    repo.closure("2025.2", "nova", ["oslo.messaging"])
    repo.closure("2025.2", "keystone", [])
    repo.change("patches/oslo.messaging/2025.2/0002-more.patch")
    result = repo.matrix()
    assert pairs(result) == {("2025.2", "nova"): ["oslo.messaging"]}
    assert result.notes == []


def test_library_patch_without_closures_affects_every_image_of_the_release_and_says_so(repo):
    repo.change("patches/oslo.messaging/2025.2/0001-fix.patch")
    result = repo.matrix()
    assert pairs(result) == {("2025.2", "nova"): ["oslo.messaging"], ("2025.2", "keystone"): []}  # tested once
    assert all("closure unknown" in e["why"][0] for e in result.include)
    assert result.notes == ["2025.2: no dependency closure recorded for nova, keystone (build/.stamps/lock/2025.2/), "
                            "so every library patch of 2025.2 counts for them; `invoke build` records it"]


def test_release_files_and_overrides_affect_their_release(repo):
    repo.change("releases/2025.2/upper-constraints.txt")
    assert pairs(repo.matrix()) == {("2025.2", "nova"): ["nova", "oslo.messaging"], ("2025.2", "keystone"): ["keystone"]}
    repo.change("overrides/2026.1/constraints.txt")
    assert pairs(repo.matrix()) == {("2026.1", "nova"): ["nova"], ("2026.1", "keystone"): []}


def test_dockerfiles_affect_what_their_lookup_serves(repo):
    added = repo.change("dockerfiles/2025.2/keystone.Dockerfile")
    assert pairs(repo.matrix()) == {("2025.2", "keystone"): []}
    repo.change("dockerfiles/service.Dockerfile")  # now serves every image but keystone of 2025.2
    assert set(pairs(repo.matrix())) == {("2025.2", "nova"), ("2026.1", "nova"), ("2026.1", "keystone")}
    repo.change("dockerfiles/2025.2/keystone.Dockerfile", remove=True)  # keystone falls back: affected
    assert pairs(repo.matrix()) == {("2025.2", "keystone"): []}
    repo.change("dockerfiles/2026.1/base-runtime.Dockerfile")
    assert set(pairs(repo.matrix())) == {("2026.1", "nova"), ("2026.1", "keystone")}
    repo.change("dockerfiles/base-runtime.Dockerfile")  # the top-level base: still serves 2025.2
    assert set(pairs(repo.matrix())) == {("2025.2", "nova"), ("2025.2", "keystone")}
    assert added != repo.base


def test_tool_code_and_build_helpers_affect_everything(repo):
    everything = {("2025.2", "nova"): ["nova", "oslo.messaging"], ("2025.2", "keystone"): ["keystone"],
                  ("2026.1", "nova"): ["nova"], ("2026.1", "keystone"): []}
    repo.change("pipeline/build.py")
    assert pairs(repo.matrix()) == everything
    repo.change("dockerfiles/venv-layer")
    assert pairs(repo.matrix()) == everything
    assert pairs(repo.matrix(base=ci.NO_COMMIT)) == everything


def test_other_files_affect_nothing_and_the_github_line(repo):
    repo.change("README.md", "tests/test_x.py")
    result = repo.matrix()
    assert result.include == []
    assert ci.github_output(result) == 'matrix={"include":[]}'


def test_only_changes_since_the_merge_base_count(repo):
    run_git(repo.root, "checkout", "-q", "-b", "feature")
    repo.change("patches/keystone/2025.2/0001-fix.patch")
    run_git(repo.root, "checkout", "-q", "master")
    main = repo.change("patches/nova/2026.1/0001-fix.patch")  # on main after the branch was cut
    result = repo.matrix(base=main, head="feature")
    assert pairs(result) == {("2025.2", "keystone"): ["keystone"]}


def test_cli_formats_and_errors(repo):
    repo.change("patches/nova/2025.2/0001-fix.patch")
    env = {"INVOKE_PIPELINE_ROOT": str(repo.root), "INVOKE_PIPELINE_WORKDIR": str(repo.root / "build")}
    github = invoke(None, "ci.matrix", "--format", "github", env=env)
    assert github.returncode == 0, github.stderr
    (line,) = github.stdout.splitlines()
    assert line.startswith("matrix=")
    assert json.loads(line[len("matrix="):])["include"][0]["service"] == "nova"
    plain = invoke(None, "ci.matrix", "--base", repo.base, env=env)
    assert json.loads(plain.stdout) == json.loads(line[len("matrix="):])
    assert "1 image(s) affected" in plain.stderr
    bad = invoke(None, "ci.matrix", "--base", "no-such-ref", env=env)
    assert bad.returncode == 7 and "--base 'no-such-ref' names no commit" in bad.stderr and "Traceback" not in bad.stderr


def test_a_library_series_is_tested_beside_an_image_that_holds_it(repo):
    repo.closure("2025.2", "nova", [])
    repo.closure("2025.2", "keystone", ["oslo.messaging"])
    repo.change("releases/2025.2/source-refs.yaml")
    assert pairs(repo.matrix()) == {("2025.2", "nova"): ["nova"], ("2025.2", "keystone"): ["keystone", "oslo.messaging"]}
