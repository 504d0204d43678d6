"""Shared fixtures: real git repositories and real project layouts in tmp folders."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from pipeline.config import Project, Settings, load_project

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_CONSTRAINTS = (REPO_ROOT.parent / "shared" / "upper-constraints").resolve()

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Upstream Dev", "GIT_AUTHOR_EMAIL": "dev@upstream.example",
    "GIT_COMMITTER_NAME": "Upstream Dev", "GIT_COMMITTER_EMAIL": "dev@upstream.example",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
}


def run_git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", "-c", "init.defaultBranch=master", *args], cwd=repo, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


CORE_V1 = textwrap.dedent('''\
    """Demo service core."""


    def greet(name):
        return "hello " + name


    def add(a, b):
        return a + b
    ''')


class Upstream:
    """A small upstream repository: master, a tag 1.0.0 and a stable branch."""

    def __init__(self, base: Path, name: str = "demo") -> None:
        self.path = base / name
        self.path.mkdir(parents=True)
        run_git(self.path, "init", "-q")
        (self.path / name).mkdir()
        (self.path / name / "__init__.py").write_text("")
        (self.path / name / "core.py").write_text(CORE_V1)
        (self.path / "README").write_text("demo\n")
        (self.path / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{name}"\nversion = "1.0.0"\n[tool.setuptools]\npackages = ["{name}"]\n')
        self.commit("Initial import")
        run_git(self.path, "tag", "1.0.0")
        self.tag_sha = self.head()
        self.write(f"{name}/core.py", CORE_V1 + "\n\ndef sub(a, b):\n    return a - b\n")
        self.commit("Add sub")
        run_git(self.path, "branch", "stable/2025.2")
        self.write("README", "demo on master\n")
        self.commit("Master only change")

    def write(self, rel: str, text: str) -> None:
        (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.path / rel).write_text(text)

    def commit(self, message: str) -> str:
        run_git(self.path, "add", "-A")
        run_git(self.path, "commit", "-q", "-m", message)
        return self.head()

    def head(self, ref: str = "HEAD") -> str:
        return run_git(self.path, "rev-parse", ref)


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path / "upstream")


class Layout:
    """A project repository (releases/, patches/, overrides/) in a tmp folder."""

    def __init__(self, root: Path, git_base: Path) -> None:
        self.root = root
        self.git_base = git_base
        self.settings_overrides: dict = {}
        root.mkdir(parents=True, exist_ok=True)

    def release(self, name: str, refs: dict[str, str], services: list[str] | None = None, extra: str = "") -> None:
        directory = self.root / "releases" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "source-refs.yaml").write_text("".join(f'{k}: "{v}"\n' for k, v in refs.items()))
        svc = services if services is not None else list(refs)
        (directory / "release.yaml").write_text(f"services: [{', '.join(svc)}]\n{extra}")

    def add_patch(self, component: str, release: str, name: str, text: str) -> Path:
        path = self.root / "patches" / component / release / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def settings_dict(self) -> dict:
        return {
            "root": str(self.root),
            "workdir": str(self.root / "build"),
            "cache_dir": str(self.root.parent / "cache"),
            "git_base": str(self.git_base),
            "source_mode": "git",
            "constraints_url": f"file://{SHARED_CONSTRAINTS}/{{release}}.txt",
            **self.settings_overrides,
        }

    def project(self) -> Project:
        return load_project(Settings.from_mapping(self.settings_dict()))

    def invoke_env(self) -> dict[str, str]:
        """Environment that points the real `invoke` CLI at this layout."""
        env = dict(os.environ)
        for key, value in self.settings_dict().items():
            env[f"INVOKE_PIPELINE_{key.upper()}"] = str(value)
        return env


@pytest.fixture
def layout(tmp_path: Path, upstream: Upstream) -> Layout:
    return Layout(tmp_path / "project", upstream.path.parent)


def invoke(layout: Layout, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["invoke", "-r", str(REPO_ROOT), *args], env=layout.invoke_env(),
                          capture_output=True, text=True)


def make_patch(repo: Path, edit, message: str, author: str = "Jane Fixer <jane@fix.example>") -> str:
    """Make a real format-patch from a throwaway commit on top of ``repo``'s HEAD, then drop it."""
    edit(repo)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", f"--author={author}", "-m", message)
    text = run_git(repo, "format-patch", "-1", "--stdout") + "\n"
    run_git(repo, "reset", "-q", "--hard", "HEAD~1")
    return text
