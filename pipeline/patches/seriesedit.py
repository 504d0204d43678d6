"""Rewriting a series in the repository: whole or not at all, never over a user's uncommitted work.

Owns every write the patch lifecycle makes to ``patches/<C>/<R>/`` and to
``releases/<R>/source-refs.yaml``: the new series is built in a staging
directory next to the old one, applied in a scratch git index to the ref it
is meant for, and only then swapped in, together with the ref, with Ctrl-C
and SIGTERM held back for the two renames.  Files it would change or remove
are refused (exit 62, named) while ``git status`` in the repository shows
them modified or untracked.  Also the names of new patch files
(``NNNN-<slug>.patch`` at the series' number width, made by ``git
format-patch`` from a commit).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import ConfigError, GitError, UncommittedChangesError
from pipeline.core.files import STAGING_PREFIX, UMASK, clean_staging, signals_held
from pipeline.core.git import text
from pipeline.core.releases import Component, Project
from pipeline.patches.applying import IndexApplier, source_context
from pipeline.patches.patchfile import DEFAULT_AUTHOR, read_patch
from pipeline.patches.series import NUMBER_RE, PATCH_SUFFIX
from pipeline.sources.fetch import SourceRecord

DEFAULT_WIDTH = 4


@dataclass(frozen=True)
class Series:
    """The files of one series directory as they are now."""

    directory: Path
    patches: tuple[Path, ...]  # in application order
    others: tuple[Path, ...]  # notes and the like: carried over untouched

    @property
    def width(self) -> int:
        widths = {len(m.group(1)) for p in self.patches if (m := NUMBER_RE.match(p.name))}
        return max(widths) if widths else DEFAULT_WIDTH

    def next_number(self) -> int:
        numbers = [int(m.group(1)) for p in self.patches if (m := NUMBER_RE.match(p.name))]
        return max(numbers, default=0) + 1


def load(project: Project, component: str, release: str, ordered: bool = True) -> Series:
    """The series as it is; ``ordered=False`` sorts by number value and accepts mixed widths (for renumbering)."""
    from pipeline.patches.series import discover

    directory = project.layout.series_dir(component, release)
    if ordered:
        patches, others = discover(directory)
    else:
        files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")) \
            if directory.is_dir() else []
        patches = sorted((p for p in files if p.suffix == PATCH_SUFFIX),
                         key=lambda p: (int(m.group(1)) if (m := NUMBER_RE.match(p.name)) else 1 << 62, p.name))
        others = [p for p in files if p.suffix != PATCH_SUFFIX]
    return Series(directory, tuple(patches), tuple(others))


# --- names ---------------------------------------------------------------------------


def renamed(name: str, number: int, width: int) -> str:
    rest = NUMBER_RE.sub("", name, count=1) if NUMBER_RE.match(name) else name
    return f"{number:0{width}d}-{rest}"


def format_patch(repo: Path, commit: str, number: int, width: int) -> tuple[str, bytes]:
    """``git format-patch`` of one commit: (file name at ``width`` digits, its bytes)."""
    with tempfile.TemporaryDirectory(prefix="format-patch-") as out:
        made = Path(text("format-patch", "-1", "--no-signature", f"--start-number={number}", "-o", out, commit,
                         cwd=repo).strip().splitlines()[-1])
        return renamed(made.name, number, width), made.read_bytes()


# --- the repository's git state ------------------------------------------------------


def uncommitted(project: Project, paths: list[Path]) -> list[str]:
    """Which of ``paths`` have changes git has not recorded (modified, staged, untracked) in the repository."""
    root = project.settings.root
    if not paths:
        return []
    try:
        text("rev-parse", "--is-inside-work-tree", cwd=root)
    except GitError:
        return []  # not a git work tree: nothing to protect against
    out = text("status", "--porcelain", "--untracked-files=all", "--", *(str(p) for p in paths), cwd=root)
    return [line[3:] for line in out.splitlines() if line.strip()]


# What this process wrote itself (path -> bytes): a refresh of several components rewrites
# source-refs.yaml once per component, and its own earlier write is no user's change.
_written: dict[Path, bytes] = {}


def refuse_uncommitted(project: Project, paths: list[Path], what: str) -> None:
    ours = {p for p in paths if p in _written and p.exists() and p.read_bytes() == _written[p]}
    dirty = uncommitted(project, [p for p in paths if p not in ours])
    if dirty:
        raise UncommittedChangesError(
            f"refused to {what}: {', '.join(dirty)} {'has' if len(dirty) == 1 else 'have'} uncommitted changes "
            f"in {project.settings.root}",
            hint="commit them (git commit) or put them aside (git stash), then rerun; nothing was changed",
        )


# --- verify and swap -------------------------------------------------------------------


def verify(project: Project, component: Component, source: SourceRecord, files: list[tuple[str, Path]]) -> None:
    """Apply ``files`` ((label, path) in order) to ``source`` in a scratch index; raise the first failure."""
    repo = project.layout.resolve(source.tree)
    with tempfile.TemporaryDirectory(prefix="verify-") as scratch:
        applier = IndexApplier(repo, source.commit, source_context(component, source), Path(scratch), scratch_objects=True)
        for label, path in files:
            applier.apply(path, read_patch(project, path), label, commit=False)


def refs_with(project: Project, release: str, component: str, ref: str) -> tuple[Path, str]:
    """``source-refs.yaml`` with the component's ref replaced, comments and order kept: (path, new text)."""
    path = project.layout.release_dir(release) / "source-refs.yaml"
    lines = path.read_text().splitlines(keepends=True)
    pattern = re.compile(rf"^(['\"]?{re.escape(component)}['\"]?\s*:\s*)(\"[^\"]*\"|'[^']*'|[^#\s]+)(\s*#.*)?$")
    for index, line in enumerate(lines):
        if m := pattern.match(line.rstrip("\n")):
            lines[index] = f'{m.group(1)}"{ref}"{m.group(3) or ""}\n'
            return path, "".join(lines)
    raise ConfigError(f"{path}: no line `{component}: <ref>` to update", hint=f"add `{component}: \"{ref}\"` by hand")


def write(project: Project, component: Component, new: list[tuple[str, bytes]], source: SourceRecord,
          what: str, ref: str | None = None) -> list[str]:
    """Make the series of ``component`` exactly ``new`` ((name, bytes) in order), checked against ``source``.

    With ``ref``, ``source-refs.yaml`` moves the component to it in the same
    swap.  Returns the repository paths that changed.  The caller holds the
    release lock.
    """
    layout = project.layout
    current = load(project, component.name, component.release, ordered=False)
    directory = current.directory
    old = {p.name: p.read_bytes() for p in current.patches}
    wanted = dict(new)
    changed = sorted({n for n in old if wanted.get(n) != old[n]} | {n for n in wanted if n not in old})
    refs = refs_with(project, component.release, component.name, ref) if ref else None
    touched = [directory / n for n in changed if n in old or (directory / n).exists()]
    if refs is not None and refs[1] != refs[0].read_text():
        touched.append(refs[0])
    else:
        refs = None
    refuse_uncommitted(project, touched, what)
    if not changed and refs is None:
        return []
    directory.parent.mkdir(parents=True, exist_ok=True)
    clean_staging(directory.parent, directory.name)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f"{STAGING_PREFIX}{directory.name}."))
    try:
        fresh = staging / "new"
        fresh.mkdir(mode=0o777 & ~UMASK)
        os.chmod(fresh, 0o777 & ~UMASK)
        for name, data in new:
            (fresh / name).write_bytes(data)
            os.chmod(fresh / name, 0o666 & ~UMASK)
        for other in current.others:
            shutil.copy2(other, fresh / other.name)
        verify(project, component, source, [(layout.repo_rel(directory / name), fresh / name) for name, _ in new])
        staged = None  # (the new source-refs.yaml in staging, where it goes, its bytes)
        if refs is not None:
            refs_file, refs_text = refs
            staged = (staging / "source-refs.yaml", refs_file, refs_text.encode())
            staged[0].write_bytes(staged[2])
            os.chmod(staged[0], refs_file.stat().st_mode & 0o777)
        with signals_held():
            if directory.exists():
                directory.rename(staging / "old")
            if new or current.others:
                fresh.rename(directory)
            if staged is not None:
                refs_tmp, refs_file, data = staged
                os.replace(refs_tmp, refs_file)
                _written[refs_file] = data
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        directory.parent.rmdir()  # the component's last series is gone
    except OSError:
        pass
    paths = [layout.repo_rel(directory / n) for n in changed]
    return paths + ([layout.repo_rel(refs[0])] if refs is not None else [])


def committer_env(date: str | None = None) -> dict[str, str]:
    """A fixed committer (and date): commits made for patch files do not depend on the user's git config."""
    env = {"GIT_COMMITTER_NAME": DEFAULT_AUTHOR[0], "GIT_COMMITTER_EMAIL": DEFAULT_AUTHOR[1], "GIT_EDITOR": "true"}
    if date:
        env["GIT_COMMITTER_DATE"] = date
    return env
