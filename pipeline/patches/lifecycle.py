"""The patch lifecycle commands that write series: new, import, refresh, remove, renumber.

Owns the operations that turn commits into patch files: cherry-picking
upstream commits (``patches.new --commit``, as ``git cherry-pick -x``),
the user's commits on the prepared tree (``--from-tree``), Gerrit changes
with their ``Depends-On:`` changes (``patches.import``), and rebasing a
series onto a new ref one patch at a time (``patches.refresh``).  Each runs
in a worktree at ``<workdir>/lifecycle/<R>/<C>/worktree`` (a clone of the
pristine tree with the series applied as commits); a conflict stops there
with ``state.json`` saying what is left, and ``--continue`` / ``--abort``
pick it up.  Nothing in the repository changes until the whole new series
has been made and checked (``seriesedit.write``).
"""

from __future__ import annotations

import re
import tempfile
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core import console, locks
from pipeline.core.errors import (
    GitError,
    LifecycleConflictError,
    UsageError,
)
from pipeline.core.files import read_json, remove, write_json
from pipeline.core.git import git, text
from pipeline.core.releases import Component, Project
from pipeline.patches import upstream
from pipeline.patches.applying import apply_series, clone_pristine, series_head
from pipeline.patches.patchfile import read_patch
from pipeline.patches.seriesedit import (
    committer_env,
    format_patch,
    load,
    verify,
    write,
)
from pipeline.sources.fetch import SourceRecord, fetch_component

STATE_FILE = "state.json"
BRANCH = "lifecycle"

UNCHANGED, REFRESHED, UPSTREAM, CONFLICT, NOT_TRIED, ADDED, EMPTY = (
    "unchanged", "refreshed", "already upstream", "conflict", "not tried", "added", "already in the ref")


@dataclass
class Pick:
    """One commit to bring onto the worktree's HEAD."""

    commit: str  # in the worktree
    label: str  # for messages: the upstream commit, Gerrit change or patch file
    record_origin: bool = False  # cherry-pick -x
    message: str | None = None  # replaces the commit's message afterwards (trailer added, or the file's own)
    original: str | None = None  # refresh: the patch file (repository path) this commit stands for


@dataclass
class Operation:
    """A lifecycle operation in a worktree; saved as state.json when it stops on a conflict."""

    kind: str  # new | import | refresh
    release: str
    component: str
    worktree: str
    source: dict[str, Any]  # the SourceRecord the finished series is checked against
    old_base: str | None = None  # refresh: the upstream revision the series was made for
    ref: str | None = None  # refresh: the new ref
    picks: list[dict[str, Any]] = field(default_factory=list)  # still to do; the first is in progress after a conflict
    done: list[dict[str, Any]] = field(default_factory=list)  # {label, status, commit, original, evidence, upstream}
    head_before: str | None = None  # HEAD before the pick that stopped

    @property
    def command(self) -> str:
        return f"invoke patches.{self.kind} --release {self.release} --component {self.component}"


def _state_path(project: Project, release: str, component: str) -> Path:
    return project.layout.lifecycle_dir(release, component) / STATE_FILE


def refuse_pending(project: Project, release: str, component: str) -> None:
    state = read_json(_state_path(project, release, component))
    if state:
        op = Operation(**state)
        raise LifecycleConflictError(
            f"{component} ({release}): a patches.{op.kind} stopped on a conflict and is not finished "
            f"(worktree {op.worktree})",
            hint=f"finish it with `{op.command} --continue`, or drop it with `{op.command} --abort`",
        )


def series_lock(project: Project, release: str) -> AbstractContextManager[None]:
    return locks.hold(project.layout.lock(release), f"the work directory of {release}")


# --- the worktree ------------------------------------------------------------------------


def pristine_worktree(project: Project, source: SourceRecord, dest: Path) -> None:
    remove(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clone_pristine(project, source, dest)
    text("checkout", "--quiet", "-f", "-B", BRANCH, source.commit, cwd=dest)


def series_worktree(project: Project, component: Component, dest: Path) -> SourceRecord:
    """A worktree at the release's ref with the current series applied as commits; the ref's source."""
    source = fetch_component(project, component)[0]
    pristine_worktree(project, source, dest)
    applied = apply_series(project, component, source, list(load(project, component.name, component.release).patches),
                           dest, source.commit, commit=True)
    head = series_head(applied, source.commit)
    text("reset", "--quiet", "--hard", head, cwd=dest)
    return source


def fetch_into(worktree: Path, url: str, ref: str) -> str:
    """Fetch ``ref`` with its parent (enough for a 3-way cherry-pick) from ``url``; its SHA."""
    text("fetch", "--quiet", "--no-tags", "--depth=2", url, ref, cwd=worktree)
    sha = text("rev-parse", "FETCH_HEAD", cwd=worktree).strip()
    text("update-ref", f"refs/picks/{sha}", sha, cwd=worktree)  # keep it reachable until the operation ends
    return sha


def subject_of(repo: Path, commit: str) -> str:
    return text("log", "-1", "--format=%s", commit, cwd=repo).strip()


def message_of(repo: Path, commit: str) -> str:
    return text("log", "-1", "--format=%B", commit, cwd=repo)


def _unmerged(worktree: Path) -> list[str]:
    return text("diff", "--name-only", "--diff-filter=U", cwd=worktree).split()


def _diff_lines(data: bytes) -> list[bytes]:
    """A patch's diff without blob names and signature: what says whether its hunks moved."""
    start = data.find(b"diff --git ")
    body = data[start:] if start >= 0 else data
    body = re.sub(rb"\n-- \n[^\n]*\n*$", b"\n", body)
    return [line for line in body.splitlines() if not line.startswith(b"index ")]


def keep_metadata(original: bytes, regenerated: bytes) -> bytes:
    """``original``'s header and message up to its diffstat separator, then ``regenerated``'s stat and diff."""
    head, sep, _ = original.partition(b"\n---\n")
    diff_at = original.find(b"diff --git ")
    new_head, new_sep, new_rest = regenerated.partition(b"\n---\n")
    if not sep or not new_sep or (0 <= diff_at < len(head)):
        return regenerated  # no mail header to keep (a plain diff or git show output)
    return head + sep + new_rest


# --- running an operation ------------------------------------------------------------------


def _save(project: Project, op: Operation) -> None:
    write_json(_state_path(project, op.release, op.component), asdict(op))


def _conflict(op: Operation, pick: Pick, files: list[str], dry_run: bool) -> LifecycleConflictError:
    where = f"{op.component} ({op.release}, {'ref ' + op.ref if op.ref else 'after the current series'})"
    if dry_run:
        return LifecycleConflictError(
            f"{pick.label} conflicts with {where} in {', '.join(files)} (dry run: nothing written, no worktree kept)",
            hint="run the same command without --dry-run to resolve the conflict in a worktree",
        )
    return LifecycleConflictError(
        f"{pick.label} conflicts with {where} in {', '.join(files)}; the worktree is {op.worktree}",
        hint=f"resolve the conflicts there (edit the files, `git add` them), then run `{op.command} --continue`; "
             f"or `{op.command} --abort` (nothing in the repository has changed)",
    )


def _pick(project: Project, op: Operation, pick: Pick, hist: upstream.History | None, dry_run: bool) -> dict[str, Any]:
    """Bring one pick onto HEAD; its result, or raise on a conflict (state saved unless ``dry_run``)."""
    wt = Path(op.worktree)
    head = text("rev-parse", "HEAD", cwd=wt).strip()
    if pick.original:
        patch = project.settings.root / pick.original
        evidence = upstream.find(patch, read_patch(project, patch), wt, head, op.source.get("upstream_revision"),
                                 hist, op.old_base)
        if evidence:
            return {"label": pick.label, "status": UPSTREAM, "commit": None, "original": pick.original,
                    "evidence": evidence.kind, "upstream": evidence.commit}
    date = text("log", "-1", "--format=%aD", pick.commit, cwd=wt).strip()
    try:
        text("cherry-pick", "--allow-empty-message", *(["-x"] if pick.record_origin else []), pick.commit, cwd=wt,
             env=committer_env(date))
    except GitError:
        files = _unmerged(wt)
        if not files and not text("diff", "--cached", "--name-only", cwd=wt).strip():
            text("cherry-pick", "--skip", cwd=wt)  # everything it changes is there already
            return _empty(pick)
        if not files:
            raise
        op.head_before = head
        if not dry_run:
            _save(project, op)
        raise _conflict(op, pick, files, dry_run) from None
    return _picked(project, op, pick, date, resolved=False)


def _empty(pick: Pick) -> dict[str, Any]:
    return {"label": pick.label, "status": UPSTREAM if pick.original else EMPTY, "commit": None,
            "original": pick.original, "evidence": "empty" if pick.original else None, "upstream": None}


def _picked(project: Project, op: Operation, pick: Pick, date: str, resolved: bool) -> dict[str, Any]:
    wt = Path(op.worktree)
    if pick.message is not None:
        text("commit", "--quiet", "--amend", "--allow-empty-message", "-F", "-", cwd=wt, env=committer_env(date),
             input=pick.message)
    commit = text("rev-parse", "HEAD", cwd=wt).strip()
    status = ADDED
    if pick.original:
        original = (project.settings.root / pick.original).read_bytes()
        regenerated = git("format-patch", "-1", "--stdout", commit, cwd=wt, binary=True)
        status = REFRESHED if resolved or _diff_lines(original) != _diff_lines(regenerated) else UNCHANGED
    return {"label": pick.label, "status": status, "commit": commit, "original": pick.original, "evidence": None,
            "upstream": None}


def run_operation(project: Project, op: Operation, dry_run: bool = False) -> list[dict[str, Any]]:
    """Do the remaining picks, then write the series; the result rows."""
    component = project.component(op.release, op.component)
    hist = upstream.history(project, component) if op.kind == "refresh" else None
    while op.picks:
        result = _pick(project, op, Pick(**op.picks[0]), hist, dry_run)
        op.done.append(result)
        op.picks.pop(0)
    return finish(project, op, component, dry_run)


def finish(project: Project, op: Operation, component: Component, dry_run: bool) -> list[dict[str, Any]]:
    wt = Path(op.worktree)
    series = load(project, op.component, op.release)
    source = SourceRecord.from_dict(op.source)
    if op.kind == "refresh":
        new: list[tuple[str, bytes]] = []
        for row in op.done:
            path = project.settings.root / row["original"]
            if row["status"] == UNCHANGED:
                new.append((path.name, path.read_bytes()))
            elif row["status"] == REFRESHED:
                regenerated = git("format-patch", "-1", "--stdout", row["commit"], cwd=wt, binary=True)
                new.append((path.name, keep_metadata(path.read_bytes(), regenerated)))
        what, ref = f"refresh {op.component} ({op.release}) onto {op.ref}", op.ref
    else:
        number, width = series.next_number(), series.width
        new = [(p.name, p.read_bytes()) for p in series.patches]
        for row in (r for r in op.done if r["status"] == ADDED):
            made = format_patch(wt, row["commit"], number, width)
            new.append(made)
            row["patch"] = project.layout.repo_rel(series.directory / made[0])
            number += 1
        what, ref = f"add patches to {op.component} ({op.release})", None
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="dry-run-") as scratch:
            files = []
            for name, data in new:
                (Path(scratch) / name).write_bytes(data)
                files.append((project.layout.repo_rel(series.directory / name), Path(scratch) / name))
            verify(project, component, source, files)
    else:
        changed = write(project, component, new, source, what, ref)
        for path in changed:
            console.note(f"written: {path}")
        remove(project.layout.lifecycle_dir(op.release, op.component))
    return op.done


def resume(project: Project, release: str, name: str, abort: bool) -> list[dict[str, Any]]:
    """``--continue`` (or ``--abort``) the operation that stopped on a conflict for (release, component)."""
    project.component(release, name)  # an unknown component is named as such
    state = read_json(_state_path(project, release, name))
    if not state:
        raise UsageError(f"{name} ({release}): no stopped patches.new, patches.import or patches.refresh to "
                         f"{'abort' if abort else 'continue'}")
    op = Operation(**state)
    with series_lock(project, release):
        if abort:
            remove(project.layout.lifecycle_dir(release, name))
            console.note(f"aborted the patches.{op.kind} of {name} ({release}): worktree {op.worktree} removed; "
                         "the repository is as it was")
            return []
        wt = Path(op.worktree)
        files = _unmerged(wt)
        pick = Pick(**op.picks[0])
        if files:
            raise _conflict(op, pick, files, dry_run=False)
        date = text("log", "-1", "--format=%aD", pick.commit, cwd=wt).strip()
        if (wt / ".git" / "CHERRY_PICK_HEAD").exists():
            if not text("diff", "--cached", "--name-only", cwd=wt).strip():
                text("cherry-pick", "--skip", cwd=wt)  # resolved to no change at all
                result = _empty(pick)
            else:
                text("cherry-pick", "--continue", cwd=wt, env=committer_env(date))
                result = _picked(project, op, pick, date, resolved=True)
        elif text("rev-parse", "HEAD", cwd=wt).strip() != op.head_before:
            result = _picked(project, op, pick, date, resolved=True)  # the user committed the resolution
        else:
            raise UsageError(f"the cherry-pick of {pick.label} in {wt} was abandoned, and nothing was committed",
                             hint=f"redo it there (git cherry-pick {pick.commit[:12]}) and resolve it, or "
                                  f"`{op.command} --abort`")
        op.done.append(result)
        op.picks.pop(0)
        op.head_before = None
        return run_operation(project, op)


# --- patches.new ---------------------------------------------------------------------------


# --- patches.import -------------------------------------------------------------------------


# --- patches.refresh ------------------------------------------------------------------------


# --- patches.remove / patches.renumber -----------------------------------------------------------


