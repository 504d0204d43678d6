"""Nox sessions: the test suite, lint and types, and the upstream unit-test environments testapply drives.

Thin by design: sessions install and call; logic lives in ``pipeline``.
"""

import os
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the pipeline package next to this file
from pipeline.testing import testenv

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

# What ruff lints: the package, its tests and benches, the task and session files.
LINTED = ("pipeline", "tests", "bench", "tasks.py", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, integration and fault tests (real git, PyPI, upper-constraints, processes and Docker), and keystone's suite.

    Two workers, one test file at a time each; keystone's whole upstream suite
    (the longest file by far) starts first (tests/conftest.py), so the rest runs beside it.
    Arguments replace the default selection: `nox -s tests -- tests/test_series.py`.
    """
    session.install("-e", ".[test]")
    args = session.posargs or ["-n", "2", "--dist", "loadfile", "tests"]
    session.run("pytest", *args)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff's lint rules on the code, tests and benches; mypy on pipeline/. Both read pyproject.toml."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", *LINTED)
    session.run("mypy")


@nox.session(name="upstream-tests", reuse_venv=True)
@nox.parametrize(("release", "component"), testenv.nox_matrix())
def upstream_tests(session: nox.Session, release: str, component: str) -> None:
    """The upstream unit-test venv of one patched (release, component) tree, as `invoke testapply` sets it up.

    Dependencies first, under the release's effective constraints; then the
    tree itself, editable, without dependencies, with PBR_VERSION set for that
    one install only (an sdist dependency built in the first step must not
    get the component's version).
    """
    spec = testenv.session_spec(release, component)
    requirements = [arg for req in spec.requirement_files for arg in ("-r", req)]
    if requirements or spec.requirements:
        session.install("-c", spec.constraints, *requirements, *spec.requirements)
    session.install("--no-deps", "-e", spec.editable, env={"PBR_VERSION": spec.version})
    record = os.environ.get("OPENSTACK_PATCHES_VENV_RECORD")
    if record:
        Path(record).write_text(session.virtualenv.location)
