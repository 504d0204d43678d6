"""Shared fixtures: real git repositories with real-shaped history, real project layouts, the real CLI.

``Upstream`` builds an OpenStack-shaped repository the way upstream does:
annotated release tags on master, a stable branch cut at a pre-release tag
(``2.0.0.0rc1``), fixes merged on master and cherry-picked to the stable
branch with ``git cherry-pick -x`` and a ``Change-Id``, a point release, and
an end-of-maintenance tag on an older branch.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from pipeline.constraints.upstream import split_snapshot  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.core.git import configure  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.core.releases import Project, load_project  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.core.settings import PROJECT_ROOT, Settings  # noqa: E402 - after sys.path.insert of the repository root

# The advisory snapshots (openstack/ossa, pypa/advisory-database) of this machine; tests skip without them.
ADVISORY_SNAPSHOTS = Path("/work/shared/advisories")
OSSA, PYPA = ADVISORY_SNAPSHOTS / "ossa", ADVISORY_SNAPSHOTS / "pypa" / "vulns"


def _upstream_constraints() -> Path:
    """The real upper-constraints of each shipped release, as upstream serves them: the body of the
    repository's own snapshot (its header records the source and sha256), so tests need nothing
    outside the repository."""
    directory = Path(tempfile.mkdtemp(prefix="upper-constraints-"))
    atexit.register(shutil.rmtree, directory, True)
    for snapshot in (REPO_ROOT / "releases").glob("*/upper-constraints.txt"):
        (directory / f"{snapshot.parent.name}.txt").write_text(split_snapshot(snapshot.read_text())[1])
    return directory


UPSTREAM_CONSTRAINTS = _upstream_constraints()


def git_env(date: str = "2025-01-01T00:00:00Z", author: str = "Upstream Dev <dev@upstream.example>") -> dict[str, str]:
    name, _, email = author.partition(" <")
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"), "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email.rstrip(">"), "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}


def run_git(repo: Path, *args: str, env: dict | None = None, check: bool = True) -> str:
    full = {**os.environ, **git_env(), **(env or {})}
    result = subprocess.run(["git", "-c", "init.defaultBranch=master", "-c", "tag.gpgsign=false", *args], cwd=repo,
                            env=full, check=False, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


CORE_V1 = textwrap.dedent('''\
    """Demo service core."""


    def greet(name):
        return "hello " + name


    def add(a, b):
        return a + b
    ''')

TEST_CORE = textwrap.dedent('''\
    import unittest

    from demo import core


    class TestCore(unittest.TestCase):
        def test_greet(self):
            self.assertIn("x", core.greet("x"))

        def test_add(self):
            self.assertEqual(core.add(1, 2), 3)
    ''')


class Upstream:
    """A demo upstream repository with OpenStack's history shape.

    master:  1.0.0 -- Add sub -- 2.0.0.0rc1 -- (stable/2.0 cut) -- Fix greet (Change-Id) -- Master only
    stable/2.0:                                  `-- Fix greet (cherry-picked -x) -- 2.0.0 -- Stable fix -- 2.0.1
    stable/1.0 (from 1.0.0): Old fix -- 1.0.1 -- 1.0-eom
    """

    def __init__(self, base: Path, name: str = "demo") -> None:
        self.name = name
        self.path = base / name
        self.path.mkdir(parents=True)
        self.day = 0
        run_git(self.path, "init", "-q")
        self.write(f"{name}/__init__.py", "")
        self.write(f"{name}/core.py", CORE_V1)
        self.write(f"{name}/tests/__init__.py", "")
        self.write(f"{name}/tests/test_core.py", TEST_CORE.replace("demo", name))
        self.write("README", "demo\n")
        self.write("pyproject.toml",
                   '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
                   f'[project]\nname = "{name}"\nversion = "1.0.0"\n[tool.setuptools]\npackages = ["{name}"]\n')
        self.commit("Initial import")
        self.tag("1.0.0")
        self.v1 = self.head()
        self.write(f"{name}/core.py", CORE_V1 + "\n\ndef sub(a, b):\n    return a - b\n")
        self.add_sub = self.commit("Add sub")
        self.tag("2.0.0.0rc1")
        self.rc1 = self.head()
        run_git(self.path, "branch", "stable/2.0")
        self.write(f"{name}/core.py", self.read(f"{name}/core.py").replace('"hello "', '"hello, "'))
        self.change_id = "I" + "1" * 40
        self.fix = self.commit(f"Fix greet\n\nCloses-Bug: #2000001\nChange-Id: {self.change_id}")
        self.write("README", "demo on master\n")
        self.master_only = self.commit("Master only change")
        run_git(self.path, "checkout", "-q", "stable/2.0")
        run_git(self.path, "cherry-pick", "-x", self.fix, env=git_env(self._date()))
        self.picked = self.head()
        self.tag("2.0.0")
        self.write("README", "demo stable fix\n")
        self.stable_fix = self.commit("Stable only fix")
        self.tag("2.0.1")
        run_git(self.path, "checkout", "-q", "-b", "stable/1.0", "1.0.0")
        self.write("README", "demo 1.0 fix\n")
        self.commit("Old fix")
        self.tag("1.0.1")
        self.write("README", "demo 1.0 last fix\n")
        self.commit("Last fix before end of maintenance")
        self.tag("1.0-eom")
        self.eom = self.head()
        run_git(self.path, "checkout", "-q", "master")

    def _date(self) -> str:
        self.day += 1
        return f"2025-01-{self.day:02d}T00:00:00Z"

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text()

    def write(self, rel: str, text: str) -> None:
        (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.path / rel).write_text(text)

    def commit(self, message: str, author: str = "Upstream Dev <dev@upstream.example>") -> str:
        run_git(self.path, "add", "-A")
        run_git(self.path, "commit", "-q", "-m", message, env=git_env(self._date(), author))
        return self.head()

    def tag(self, name: str) -> None:
        run_git(self.path, "tag", "-a", "-m", f"{self.name} {name}", name, env=git_env(self._date()))

    def head(self, ref: str = "HEAD") -> str:
        return run_git(self.path, "rev-parse", ref)


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path / "upstream")


class Layout:
    """A project repository (releases/, patches/, overrides/) in a tmp folder, with its own work dir and cache."""

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

    def add_patch(self, component: str, release: str, name: str, text: str | bytes) -> Path:
        path = self.root / "patches" / component / release / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def settings_dict(self) -> dict:
        return {
            "root": str(self.root),
            "workdir": str(self.root / "build"),
            "cache_dir": str(self.root.parent / "cache"),
            "git_base": str(self.git_base),
            "source_mode": "git",
            "constraints_url": f"file://{UPSTREAM_CONSTRAINTS}/{{release}}.txt",
            **self.settings_overrides,
        }

    def project(self, **extra) -> Project:
        from pipeline.core.git import configure

        settings = Settings.from_mapping({**self.settings_dict(), **extra})
        configure(settings.network.proxy_env())
        return load_project(settings)

    def invoke_env(self) -> dict[str, str]:
        """Environment that points the real `invoke` CLI at this layout."""
        env = dict(os.environ)
        for key, value in self.settings_dict().items():
            env[f"INVOKE_PIPELINE_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return env


@pytest.fixture
def layout(tmp_path: Path, upstream: Upstream) -> Layout:
    return Layout(tmp_path / "project", upstream.path.parent)


def invoke(layout: Layout | None, *args: str, env: dict | None = None, timeout: float = 1800) -> subprocess.CompletedProcess:
    """The real CLI, as a user runs it."""
    full = {**(layout.invoke_env() if layout else os.environ), **(env or {})}
    return subprocess.run(["invoke", "-r", str(REPO_ROOT), *args], env=full, capture_output=True, text=True,
                          timeout=timeout)


def make_patch(repo: Path, edit, message: str, author: str = "Jane Fixer <jane@fix.example>", *extra: str,
               raw: bool = False) -> str | bytes:
    """A real format-patch from a throw-away commit on top of ``repo``'s HEAD, then dropped (bytes with ``raw``)."""
    edit(repo)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", f"--author={author}", "-m", message)
    out = subprocess.run(["git", "format-patch", "-1", "--stdout", *extra], cwd=repo, check=True,
                         capture_output=True, env={**os.environ, **git_env()}).stdout
    run_git(repo, "reset", "-q", "--hard", "HEAD~1")
    return out if raw else out.decode("utf-8")


def pbr_reference_version(repo: Path, ref: str) -> str:
    """What pbr itself computes for ``ref`` (a full clone checked out there): the regression oracle."""
    clone = repo.parent / f"pbr-oracle-{ref.replace('/', '-')}"
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True, capture_output=True)
    if subprocess.run(["git", "checkout", "-q", "--detach", ref], cwd=clone, capture_output=True).returncode != 0:
        subprocess.run(["git", "checkout", "-q", "--detach", f"origin/{ref}"], cwd=clone, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", "import pbr.packaging as p; print(p._get_version_from_git())"],
                         cwd=clone, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_registry(directory: Path) -> Iterator[str]:
    """Debian's docker-registry on a free loopback port, storing under ``directory``; yields host:port."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed (scripts/setup installs it)"
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """The session's package cache (uv's and the wheels'), shared by the image tests."""
    return tmp_path_factory.mktemp("image-cache")


def shipped(workdir: Path, cache: Path, **extra) -> Project:
    """The shipped configuration (this repository's releases and patches) with its own work and cache folders."""
    settings = Settings.from_mapping({"workdir": str(workdir), "cache_dir": str(cache), **extra}, root=PROJECT_ROOT)
    configure(settings.network.tool_env())
    return load_project(settings)


def demo_layout(tmp_path: Path, upstream: Upstream, cache: Path, base: str = "") -> Layout:
    """A project whose 2025.2 has the one service demo (2.0.1 of ``upstream``), with the session's package cache."""
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"demo": "2.0.1"}, extra=base)
    layout.settings_overrides["cache_dir"] = str(cache)
    return layout


def pytest_collection_modifyitems(config, items):
    """Whole upstream suites first: with two workers, the rest of the tests run beside the longest one."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("suite") else 1)
