"""Thin wrapper around the git command line (via ``sh``).

Owns how git is invoked: no pager, no colour, no prompts, a fixed locale so
error text can be parsed, and errors that carry git's whole stderr and the
working directory (``sh``'s own message truncates both).
"""

from __future__ import annotations

import os
from pathlib import Path

import sh

from .errors import PipelineError

_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitError(PipelineError):
    """A git command failed; stages turn the expected cases into specific errors."""

    exit_code = 12

    def __init__(self, args: tuple[str, ...], cwd: Path | None, returncode: int, stderr: str) -> None:
        self.args_, self.cwd, self.returncode, self.stderr = args, cwd, returncode, stderr
        where = f" (in {cwd})" if cwd else ""
        super().__init__(f"git {' '.join(args)}{where} failed with exit code {returncode}:\n{stderr.strip()}")


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | None = None) -> str:
    """Run git and return its stdout; raise GitError with full stderr on failure."""
    full_env = {**os.environ, **_BASE_ENV, **(env or {})}
    try:
        out = sh.git(
            "--no-pager",
            "-c", "color.ui=never",
            "-c", "advice.detachedHead=false",
            "-c", "init.defaultBranch=main",
            *args,
            _cwd=str(cwd) if cwd else None,
            _env=full_env,
            _tty_out=False,
            _in=input,
            _err_to_out=False,
        )
    except sh.ErrorReturnCode as exc:
        raise GitError(tuple(args), cwd, exc.exit_code, exc.stderr.decode("utf-8", "replace")) from None
    return str(out)


def rev_parse(repo: Path, rev: str) -> str | None:
    """Full SHA of ``rev`` as a commit, or None if the repository lacks it."""
    try:
        return git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=repo).strip() or None
    except GitError:
        return None


def clean_at(tree: Path, commit: str) -> bool:
    """Whether ``tree`` is a git work tree checked out at ``commit`` with no local changes."""
    if not (tree / ".git").exists():
        return False
    try:
        return git("rev-parse", "HEAD", cwd=tree).strip() == commit and not git("status", "--porcelain", cwd=tree).strip()
    except GitError:
        return False
