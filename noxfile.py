"""Nox sessions: the test suite (and, from pipeline.testapply, upstream unit tests).

Thin by design: sessions install and call; logic lives in ``pipeline``.
"""

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
    """Upstream unit tests of one patched (release, component) tree; driven by `invoke testapply`."""
    spec = testapply.session_spec(release, component)
    install = ["-c", spec.constraints, *[arg for req in spec.requirements for arg in ("-r", req)], "-e", spec.tree]
    session.install(*install, env={"PBR_VERSION": spec.version})
    session.chdir(spec.tree)
    output = session.run(*spec.command, *session.posargs, silent=True, success_codes=[0, 1], env=dict(spec.env)) or ""
    Path(spec.output).write_text(output)
    print(output)
    if session.posargs and "No tests" in output:
        session.error("the test selection matched no tests")
