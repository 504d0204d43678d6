"""How git is called (through ``sh``).

No pager, no colour, no prompts, no signing, no line-ending conversion, a
fixed locale so error text can be matched, and errors that carry git's whole
stderr (redacted) and the working directory (``sh``'s own message truncates
both).  A full disk is reported as such (naming the work directory or the
cache), not as a git failure or a damaged repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, overload

import sh

from pipeline.core.errors import GitError
from pipeline.core.files import disk_full, nearly_full

_BASE_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1", "GIT_ASKPASS": "true",
             "SSH_ASKPASS": "true"}
_CONFIG = ("-c", "color.ui=never", "-c", "advice.detachedHead=false", "-c", "init.defaultBranch=main",
           "-c", "core.autocrlf=false", "-c", "core.safecrlf=false", "-c", "commit.gpgsign=false",
           "-c", "tag.gpgsign=false", "-c", "gc.auto=0", "-c", "maintenance.auto=false")
_extra_env: dict[str, str] = {}
DISK_FULL_MARKERS = ("No space left on device", "Out of diskspace")

CORRUPTION_MARKERS = ("corrupt", "bad object", "did not receive expected object", "packfile", "loose object",
                      "unable to read", "inflate", "missing blob", "missing tree", "broken link", "object file",
                      "invalid object", "index-pack failed", "fatal: bad tree", "is empty")


def configure(env: dict[str, str]) -> None:
    """Environment every git call gets (proxies, CA bundle), set once from the configuration."""
    _extra_env.clear()
    _extra_env.update(env)


@overload
def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | bytes | None = None,
        binary: Literal[False] = False) -> str: ...


@overload
def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | bytes | None = None,
        binary: Literal[True]) -> bytes: ...


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | bytes | None = None,
        binary: bool = False) -> str | bytes:
    """Run git and return its stdout; raise GitError with the full stderr on failure."""
    full_env = {**os.environ, **_BASE_ENV, **_extra_env, **(env or {})}
    try:
        out = sh.git("--no-pager", *_CONFIG, *args, _cwd=str(cwd) if cwd else None, _env=full_env,
                     _tty_out=False, _in=input, _err_to_out=False, _return_cmd=True, _decode_errors="replace")
    except sh.ErrorReturnCode as exc:
        stderr = exc.stderr.decode("utf-8", "replace")
        # A checkout on a full disk prints "unable to write file" for each file and names the cause last, if
        # at all ("Out of diskspace"): it is a full disk, not a failure of git or a damaged repository.
        if any(marker in stderr for marker in DISK_FULL_MARKERS) or nearly_full(cwd or Path.cwd()):
            raise disk_full(cwd or Path.cwd()) from None
        raise GitError(tuple(args), cwd, exc.exit_code, stderr) from None
    return out.stdout if binary else out.stdout.decode("utf-8", "replace")


def text(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, input: str | bytes | None = None) -> str:
    result = git(*args, cwd=cwd, env=env, input=input)
    assert isinstance(result, str)
    return result


def rev_parse(repo: Path, rev: str) -> str | None:
    """Full SHA of ``rev`` as a commit, or None if the repository lacks it."""
    try:
        return text("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=repo).strip() or None
    except GitError as error:
        if is_corruption(error):
            raise  # a damaged repository is not a missing commit
        return None


def is_corruption(error: GitError) -> bool:
    lowered = error.stderr.lower()
    return any(marker in lowered for marker in CORRUPTION_MARKERS)


def head_commit(tree: Path) -> str | None:
    """HEAD of a work tree read from its files (no git process): the fast check of a stamped tree."""
    git_dir = tree / ".git"
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        loose = git_dir / ref
        if loose.exists():
            return loose.read_text().strip()
        for line in (git_dir / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except (OSError, UnicodeDecodeError):
        return None
    return None


def clean_at(tree: Path, commit: str) -> bool:
    """Whether ``tree`` is a git work tree checked out at ``commit`` with no local changes."""
    if head_commit(tree) != commit:
        return False
    try:
        return not text("status", "--porcelain", cwd=tree).strip()
    except GitError:
        return False
