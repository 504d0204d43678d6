"""Nox sessions: the test suite (and, from pipeline.testapply, upstream unit tests).

Thin by design: sessions install and call; logic lives in ``pipeline``.
"""

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (real git, PyPI, upper-constraints and Docker)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)
