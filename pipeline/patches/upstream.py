"""What upstream already has: a component's git history, its trees at other refs, and where a patch landed.

Owns the questions the patch lifecycle asks of upstream: the whole history
of a component (its git mirror, fetched whole; ``None`` when the repository
is unreachable, e.g. no opendev access, so callers fall back to content
evidence), the pristine tree of a component at a ref other than the
release's (a release tag from its sdist, anything else from git), and
``find``: whether a tree already contains a patch, by ``Change-Id``, by the
commit named in ``(cherry picked from commit ...)``, by patch-id, or by the
patch applying in reverse, with the upstream commit that holds it.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.core import console, locks
from pipeline.core.errors import FetchError, GitError
from pipeline.core.git import git, rev_parse, text
from pipeline.core.releases import Component, Project
from pipeline.patches.patchfile import PatchMeta
from pipeline.patches.provenance import provenance
from pipeline.sources.fetch import SourceRecord, fetch_component
from pipeline.sources.mirrors import Mirror

EVIDENCE = ("change-id", "cherry-picked-from", "patch-id", "reverse-apply")
# Upstream's own tests, release notes and docs move on independently of a fix, and so do the lines around
# it: when the whole patch does not apply in reverse, its code files alone doing so is the evidence, with
# their context or, when every code hunk adds lines, without it (those lines are there, in order).
NOT_CODE = ("tests/*", "*/tests/*", "releasenotes/*", "doc/*", "api-ref/*")
NOT_CODE_RE = re.compile(r"(^|/)tests/|^(releasenotes|doc|api-ref)/")
COMMIT_HEADER_RE = re.compile(r"^(?:From|commit) ([0-9a-f]{40})\b")
_histories: dict[Path, History | None] = {}


@dataclass(frozen=True)
class Evidence:
    kind: str  # one of EVIDENCE
    commit: str | None  # the upstream commit that contains the patch, where known


class History:
    """The whole upstream history of one component: its git mirror, used under the mirror's lock."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self.path = mirror.path

    def _git(self, *args: str) -> str:
        with self.mirror.lock():
            return text(*args, cwd=self.path)

    def resolve(self, rev: str | None) -> str | None:
        if not rev:
            return None
        with self.mirror.lock():
            return rev_parse(self.path, rev)

    def contains(self, tip: str, sha: str) -> bool:
        try:
            self._git("merge-base", "--is-ancestor", sha, tip)
            return True
        except GitError:
            return False

    def grep(self, tip: str, needle: str) -> str | None:
        """The newest commit reachable from ``tip`` whose message holds ``needle`` (a fixed string)."""
        out = self._git("log", "-1", "--format=%H", "-F", f"--grep={needle}", tip)
        return out.strip() or None

    def patch_ids(self, base: str, tip: str, paths: list[str]) -> dict[str, str]:
        """patch-id -> commit for the commits of ``base..tip`` that touch ``paths``."""
        commits = self._git("rev-list", "--no-merges", f"{base}..{tip}", "--", *paths).split()
        if not commits:
            return {}
        with self.mirror.lock():
            shown = git("show", "--format=commit %H", "--patch", *commits, cwd=self.path, binary=True)
        found: dict[str, str] = {}
        for line in text("patch-id", "--stable", input=shown).splitlines():
            pid, _, commit = line.partition(" ")
            found.setdefault(pid, commit)
        return found


def history(project: Project, component: Component,
            without: str = "only content evidence (the patch applying in reverse) is used") -> History | None:
    """The component's upstream history (fetched whole once per run), or None when it cannot be had (``without``
    says what the caller does then)."""
    mirror = Mirror(project, component)
    if mirror.path in _histories:
        return _histories[mirror.path]
    found: History | None = History(mirror)
    with mirror.lock():
        mirror.ensure()
        if not project.settings.offline:
            try:
                mirror.fetch_history()
            except GitError as exc:
                reason = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else f"exit {exc.returncode}"
                if not mirror.complete():
                    console.note(f"{component.name}: no upstream git history ({component.public_url}: {reason}); {without}")
                    found = None
                else:
                    console.note(f"{component.name}: {component.public_url} unreachable ({reason}); using the mirror as it is")
        elif not mirror.complete():
            found = None
    _histories[mirror.path] = found
    return found


def tree_at(project: Project, component: Component, ref: str) -> SourceRecord:
    """The pristine tree of ``component`` at ``ref`` (the release's own tree when ``ref`` is its ref)."""
    with locks.hold(project.layout.lock(component.release), f"the work directory of {component.release}"):
        if ref == component.ref:
            return fetch_component(project, component)[0]
        dest = project.layout.ref_tree(component.release, component.name, ref)
        return fetch_component(project, replace(component, ref=ref), dest=dest)[0]


def patch_id(path: Path) -> str | None:
    out = text("patch-id", "--stable", input=path.read_bytes())
    return out.split()[0] if out.strip() else None


def applies(repo: Path, commit: str, patch: Path, reverse: bool = False, exclude: tuple[str, ...] = (),
            context: int | None = None) -> bool:
    """Whether ``patch`` applies (or, with ``reverse``, un-applies) to ``commit``'s tree (checked in a scratch index).

    ``exclude`` leaves out the files matching these git-apply patterns;
    ``context`` is how many lines of context must match (git apply -C).
    """
    with tempfile.TemporaryDirectory(prefix="apply-") as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        text("read-tree", commit, cwd=repo, env=env)
        try:
            text("apply", "--cached", "--check", *(["--reverse"] if reverse else []),
                 *(f"--exclude={pattern}" for pattern in exclude), *([f"-C{context}"] if context is not None else []),
                 str(patch), cwd=repo, env=env)
            return True
        except GitError:
            return False


def find(patch: Path, meta: PatchMeta, repo: Path, commit: str, upstream_commit: str | None,
         hist: History | None, base: str | None) -> Evidence | None:
    """Where the tree at ``commit`` (in ``repo``) already contains ``patch``, if it does.

    ``upstream_commit`` is that tree's commit in the upstream history (None
    for an sdist whose revision the history lacks); ``base`` is the commit the
    series was made for, which bounds the patch-id search.
    """
    tip = hist.resolve(upstream_commit) if hist else None
    if hist and tip:
        origin = provenance(meta)
        if origin.change_id and (found := hist.grep(tip, f"Change-Id: {origin.change_id}")):
            return Evidence("change-id", found)
        for picked in origin.cherry_picked_from:
            full = hist.resolve(picked)
            if full and hist.contains(tip, full):
                return Evidence("cherry-picked-from", full)
            if found := hist.grep(tip, f"cherry picked from commit {picked}"):
                return Evidence("cherry-picked-from", found)
        start = hist.resolve(base)
        pid = patch_id(patch)
        if start and pid and start != tip:
            if found := hist.patch_ids(start, tip, _paths(meta)).get(pid):
                return Evidence("patch-id", found)
    if applies(repo, commit, patch, reverse=True) or (_every_code_hunk_adds(meta) and any(
            applies(repo, commit, patch, reverse=True, exclude=NOT_CODE, context=context) for context in (None, 0))):
        return Evidence("reverse-apply", tip or upstream_commit)
    return None


def _every_code_hunk_adds(meta: PatchMeta) -> bool:
    """Whether the patch has code files and each of their hunks adds a non-blank line.

    Only then do the added lines alone (reverse-applied without context) say
    that a tree has the change: a hunk that only removes lines would
    "un-apply" anywhere.
    """
    code, adds, seen = False, None, False
    for line in meta.text.split("\n"):
        if line.startswith("diff --git ") or line.startswith("@@"):
            if adds is False:
                return False
            if line.startswith("diff --git "):
                code, adds = not NOT_CODE_RE.search(line.rsplit(" b/", 1)[-1]), None
            else:
                adds = False if code else None
                seen = seen or code
        elif adds is False and line.startswith("+") and line[1:].strip():
            adds = True
    return seen and adds is not False


def _paths(meta: PatchMeta) -> list[str]:
    return sorted({p for c in meta.changes for p in (c.old_path, c.new_path) if p})


def require_history(project: Project, component: Component, why: str) -> History:
    found = history(project, component)
    if found is None:
        raise FetchError(f"{component.label}: {why} needs the upstream git history of {component.public_url}, "
                         "which cannot be fetched" + (" in offline mode" if project.settings.offline else ""),
                         hint="point git_base or repos at a reachable mirror of the repository"
                              + (", or run without --offline" if project.settings.offline else ""))
    return found


# --- patches.upstreamed -------------------------------------------------------------------


def upstreamed(project: Project, releases: list[str] | None, components: list[str], to: str | None) -> list[dict[str, Any]]:
    """For every patch: whether its release's ref (or ``to``) already contains it, with the evidence."""
    from pipeline.patches.patchfile import read_patch
    from pipeline.patches.series import all_series, discover

    rows = []
    for release, name in all_series(project, releases):
        if components and name not in components:
            continue
        component = project.component(release, name)
        base = tree_at(project, component, component.ref)
        target = tree_at(project, component, to) if to else base
        hist = history(project, component)
        repo = project.layout.resolve(target.tree)
        for patch in discover(project.layout.series_dir(name, release))[0]:
            meta = read_patch(project, patch)
            evidence = find(patch, meta, repo, target.commit, target.upstream_revision, hist, base.upstream_revision)
            rows.append({"release": release, "component": name, "patch": project.layout.repo_rel(patch),
                         "subject": meta.subject, "ref": to or component.ref, "upstream": evidence is not None,
                         "evidence": evidence.kind if evidence else None, "commit": evidence.commit if evidence else None})
    return rows


def as_report(rows: list[dict[str, Any]]) -> console.Report:
    """What ``invoke patches.upstreamed`` prints: a row per patch, and the evidence that upstream holds it."""
    return console.Report.of([
        console.Column("release"), console.Column("component"), console.Column("patch"), console.Column("ref"),
        console.Column("upstream", lambda r: "yes" if r["upstream"] else "no"),
        console.Column("evidence", lambda r: r["evidence"] or "-"),
        console.Column("commit", lambda r: (r["commit"] or "-")[:12]),
    ], rows, empty="no patches")
