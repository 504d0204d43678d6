"""Nox sessions: the test suite (and, from pipeline.testapply, upstream unit tests).

Thin by design: sessions install and call; logic lives in ``pipeline``.
"""

import os
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the pipeline package next to this file
from pipeline import testapply  # noqa: E402

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (real git, PyPI, upper-constraints and Docker)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(name="upstream-tests", reuse_venv=True)
@nox.parametrize(("release", "component"), testapply.nox_matrix())
def upstream_tests(session: nox.Session, release: str, component: str) -> None:
    """Upstream unit tests of one patched (release, component) tree, as set up by `invoke testapply`.

    testapply calls this with --install-only to build the venv, then runs the
    test command in it directly for each patch; run by hand, it runs the tests.
    """
    spec = testapply.session_spec(release, component)
    install = ["-c", spec.constraints, *[arg for req in spec.requirements for arg in ("-r", req)], "-e", spec.tree]
    session.install(*install, env={"PBR_VERSION": spec.version})
    record = os.environ.get(testapply.VENV_RECORD_ENV)
    if record:
        Path(record).write_text(session.virtualenv.location)
    session.chdir(spec.tree)
    session.run(*spec.command, *session.posargs, env=dict(spec.env))
