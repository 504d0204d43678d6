"""Backport candidates: the upstream fixes a release's series could take next, security first.

Owns ``invoke patches.candidates``: from the component's whole upstream
history (its mirror, as ``patches.upstreamed`` fetches it), the commits on
the release's own stable branch beyond its ref, on newer stable branches
and on master that fix an advisory affecting the pinned version (its id, a
CVE or a Launchpad bug of it in the message) or carry ``Closes-Bug``, a CVE
or an OSSA id; without those the ref or the series already has (same
``Change-Id``, ``cherry picked from commit`` or patch-id); one per fix, the
copy nearest the release (its stable branch's ``-x`` backport before the
master commit); each checked to apply to the ref plus the series in a
private index; ranked advisory fixes first, then other security fixes, then
bug fixes.  An advisory no commit fixes is listed by its Gerrit reviews for
the release (``patches.import --change``), which is all there is when the
history cannot be fetched.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.core import console, runner
from pipeline.core.errors import FetchError, GitError
from pipeline.core.git import git, text
from pipeline.core.releases import RELEASE_NAME, Component, Project
from pipeline.patches import upstream
from pipeline.patches.applying import IndexApplier, source_context
from pipeline.patches.patchfile import read_patch
from pipeline.patches.provenance import (
    BUG_TRAILERS,
    CHANGE_ID_RE,
    CHERRY_PICK_RE,
    CVE_RE,
    provenance,
)
from pipeline.patches.series import discover
from pipeline.provenance import advisory_database
from pipeline.provenance.advisories import ADVISORY_ID_RE, Advisory
from pipeline.provenance.assessment import patch_fixes
from pipeline.sources.fetch import SourceRecord

ADVISORY, SECURITY, BUG = "advisory fix", "security", "bug fix"
KINDS = (ADVISORY, SECURITY, BUG)
BUG_LINE_RE = re.compile(rf"^(?:{'|'.join(BUG_TRAILERS)}):\s*#?(\d+)", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class Candidate:
    release: str
    component: str
    kind: str  # one of KINDS
    fixes: tuple[str, ...]  # advisory ids, CVEs, "bug 2142138"
    branch: str  # where the chosen commit is, or "review" for a Gerrit change
    commit: str | None
    subject: str
    date: int
    applies: str  # applies | applies with a 3-way merge | conflicts in ... | not checked ...
    command: str
    also: tuple[str, ...] = ()  # the same fix on other branches: "master 3eba22ff09"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Commit:
    sha: str
    date: int
    message: str
    branch: str
    rank: int  # of its branch: 0 the release's own, then newer stable branches, then master

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def change_id(self) -> str | None:
        found = CHANGE_ID_RE.findall(self.message)
        return found[-1] if found else None

    @property
    def picked(self) -> tuple[str, ...]:
        return tuple(CHERRY_PICK_RE.findall(self.message))


def _branches(repo: Path, release: str) -> tuple[list[str], list[str]]:
    """The release's own stable branch (if any); newer stable branches (oldest first) and master."""
    names = text("for-each-ref", "--format=%(refname:short)", "refs/heads/", cwd=repo).split()
    own = [n for n in names if n in (f"stable/{release}", f"unmaintained/{release}")]
    key = tuple(int(p) for p in release.split("."))
    newer = sorted((n for n in names if n.startswith("stable/") and RELEASE_NAME.match(n.split("/", 1)[1])
                    and tuple(int(p) for p in n.split("/", 1)[1].split(".")) > key),
                   key=lambda n: tuple(int(p) for p in n.split("/", 1)[1].split(".")))
    return own[:1], newer + [n for n in names if n in ("master", "main")][:1]


def _log(repo: Path, *revs: str) -> list[tuple[str, int, str]]:
    out = text("log", "--no-merges", "--format=%H%x00%ct%x00%B%x1e", *revs, cwd=repo)
    found = []
    for entry in out.split("\x1e"):
        if entry.strip():
            sha, date, message = entry.strip("\n").split("\x00", 2)
            found.append((sha, int(date), message.strip()))
    return found


def _patch_ids(repo: Path, commits: list[str]) -> dict[str, str]:
    """commit -> patch-id (git patch-id --stable)."""
    if not commits:
        return {}
    shown = git("show", "--format=commit %H", "--patch", *commits, cwd=repo, binary=True)
    ids = {}
    for line in text("patch-id", "--stable", input=shown).splitlines():
        pid, _, commit = line.partition(" ")
        ids[commit] = pid
    return ids


def _fixes(commit: Commit, relevant: list[Advisory]) -> tuple[str, tuple[str, ...]] | None:
    """The kind of fix a commit is and what it fixes, or None when its message names no bug, CVE or advisory."""
    ids = set(ADVISORY_ID_RE.findall(commit.message)) | set(CVE_RE.findall(commit.message))
    bugs = set(BUG_LINE_RE.findall(commit.message))
    fixed = [a.id for a in relevant if ids & set(a.ids) or bugs & set(a.bugs)]
    if fixed:
        return ADVISORY, tuple(fixed)
    if ids:
        return SECURITY, tuple(sorted(ids))
    closes = re.findall(r"^Closes-Bug:\s*#?(\d+)", commit.message, re.MULTILINE | re.IGNORECASE)
    return (BUG, tuple(f"bug {b}" for b in closes)) if closes else None


def _diffs(repo: Path, commits: list[str]) -> dict[str, bytes]:
    """commit -> its diff (binary, full blob ids), from one git process."""
    if not commits:
        return {}
    out = git("show", "--format=%x00%H", "--patch", "--binary", "--full-index", *commits, cwd=repo, binary=True)
    assert isinstance(out, bytes)
    diffs = {}
    for part in out.split(b"\0")[1:]:
        sha, _, diff = part.partition(b"\n")
        diffs[sha.decode()] = diff.lstrip(b"\n")
    return diffs


def _preimages(diff: bytes) -> dict[str, str]:
    """path -> the blob the diff changes (40 zeros for a file it creates)."""
    found, path = {}, None
    for line in diff.split(b"\n"):
        if line.startswith(b"diff --git "):
            path = line.decode("utf-8", "replace").split(" a/", 1)[1].rsplit(" b/", 1)[0]
        elif line.startswith(b"index ") and path is not None:
            found[path] = line.split()[1].split(b"..")[0].decode()
    return found


def _applies(repo: Path, env: dict[str, str], diff: bytes, blobs: dict[str, str]) -> str:
    """Whether a diff applies to the index ``env`` names (whose blobs are ``blobs``): as is, with a 3-way merge, or
    not; the index is left as it was."""
    before = _preimages(diff)
    if before and all(blobs.get(path, "0" * 40) == blob for path, blob in before.items()):
        return "applies"  # the very files the commit changed: no need to ask git
    try:
        text("apply", "--cached", "--check", "-", cwd=repo, env=env, input=diff)
        return "applies"
    except GitError:
        pass
    # git apply --check --3way says "with conflicts" and exits 0: merge for real, into a copy of the index.
    with tempfile.TemporaryDirectory(prefix="trial-", dir=Path(env["GIT_INDEX_FILE"]).parent) as trial:
        trial_env = {**env, "GIT_INDEX_FILE": str(Path(trial) / "index")}
        shutil.copyfile(env["GIT_INDEX_FILE"], trial_env["GIT_INDEX_FILE"])
        try:
            text("apply", "--cached", "--3way", "-", cwd=repo, env=trial_env, input=diff)
            return "applies with a 3-way merge"
        except GitError as failure:
            unmerged = {line.split("\t", 1)[1] for line in text("ls-files", "-u", cwd=repo, env=trial_env).splitlines()}
            files = unmerged or set(re.findall(r"^error: (?:patch failed: )?([^:\s]+):", failure.stderr, re.MULTILINE))
            return f"conflicts in {', '.join(sorted(files)) or 'its files'}"


@dataclass(frozen=True)
class Series:
    """The release's series as the search needs it: its files and messages, and what marks a commit as taken."""

    patches: tuple[Path, ...]
    messages: tuple[str, ...]
    change_ids: frozenset[str]
    picked: frozenset[str]  # commits named in "cherry picked from commit"
    patch_ids: frozenset[str]

    @classmethod
    def read(cls, project: Project, component: Component) -> Series:
        patches = tuple(discover(project.layout.series_dir(component.name, component.release))[0])
        metas = [read_patch(project, path) for path in patches]
        origins = [provenance(meta) for meta in metas]
        return cls(patches, tuple(m.message for m in metas), frozenset(o.change_id for o in origins if o.change_id),
                   frozenset(p for o in origins for p in o.cherry_picked_from),
                   frozenset(pid for path in patches if (pid := upstream.patch_id(path))))


def _review_candidates(release: str, component: str, advisory: Advisory) -> list[Candidate]:
    return [Candidate(release, component, ADVISORY, (advisory.id, *advisory.cves), "review", None,
                      f"Gerrit change {n}: {advisory.title}", 0, "not checked (a Gerrit change: patches.import fetches it)",
                      f"invoke patches.import --release {release} --component {component} --change {n}")
            for n in advisory.review_numbers(component, release)]


def for_component(project: Project, component: Component, database: advisory_database.Database | None,
                  ) -> tuple[list[Candidate], dict[str, Any]]:
    """The component's candidates, and what they were found against (ref, version, advisories, history)."""
    source = upstream.tree_at(project, component, component.ref)
    series = Series.read(project, component)
    relevant = [a for a in (database.for_package(component.pypi_name) if database else ())
                if a.affected[0].containing(source.version)
                and not any(patch_fixes(a, component.name, message) for message in series.messages)]
    hist = upstream.history(project, component, without="only the advisories' Gerrit reviews are listed")
    about = {"release": component.release, "component": component.name, "ref": component.ref, "version": source.version,
             "history": hist is not None, "advisories": [a.id for a in relevant]}
    found: list[Candidate] = []
    if hist is not None:
        found = _from_history(project, component, source, hist, relevant, series)
    covered = {f for c in found for f in c.fixes}
    for advisory in relevant:
        if advisory.id not in covered:
            found += _review_candidates(component.release, component.name, advisory)
    found.sort(key=lambda c: (KINDS.index(c.kind), c.branch == "review", c.date))
    return found, about


def _from_history(project: Project, component: Component, source: SourceRecord, hist: upstream.History,
                  relevant: list[Advisory], series: Series) -> list[Candidate]:
    repo = hist.path
    release, name = component.release, component.name
    with hist.mirror.lock():
        ref = hist.resolve(source.upstream_revision) or hist.resolve(f"refs/tags/{component.ref}")
        if ref is None:
            raise FetchError(f"{component.label}: the ref {component.ref} ({source.upstream_revision}) is not in the "
                             f"upstream history of {component.public_url}",
                             hint="check releases/<release>/source-refs.yaml against the upstream repository")
        own, newer = _branches(repo, release)
        seen: dict[str, Commit] = {}
        for rank, branch in enumerate(own + newer):
            for sha, date, message in _log(repo, f"refs/heads/{branch}", f"^{ref}"):
                seen.setdefault(sha, Commit(sha, date, message, branch, rank))
        # What the ref holds beyond master (its stable branch's backports) and what the series carries.
        held = _log(repo, ref, *(f"^refs/heads/{b}" for b in newer))
        held_ids = {c for _, _, m in held for c in CHANGE_ID_RE.findall(m)} | series.change_ids
        held_picked = {p for _, _, m in held for p in CHERRY_PICK_RE.findall(m)} | series.picked | {s for s, _, _ in held}
        wanted = []
        for commit in seen.values():
            kind = _fixes(commit, relevant)
            if kind is None or commit.change_id in held_ids or any(_same(commit.sha, p) for p in held_picked) \
                    or any(_same(p, h) for p in commit.picked for h in held_picked):
                continue
            wanted.append((commit, kind))
        pids = _patch_ids(repo, [c.sha for c, _ in wanted] + [s for s, _, _ in held])
        held_pids = {pids.get(s) for s, _, _ in held} | series.patch_ids
        wanted = [(c, k) for c, k in wanted if pids.get(c.sha) not in held_pids]
        # One per fix: the copy on the branch nearest the release.
        groups: dict[str, list[tuple[Commit, tuple[str, tuple[str, ...]]]]] = {}
        for commit, kind in wanted:
            key = commit.change_id or (commit.picked[0] if commit.picked else commit.sha)
            groups.setdefault(key, []).append((commit, kind))
        found = []
        with tempfile.TemporaryDirectory(prefix="candidates-") as scratch:
            applier = IndexApplier(repo, ref, source_context(component, source), Path(scratch), scratch_objects=True)
            for path in series.patches:
                applier.apply(path, read_patch(project, path), project.layout.repo_rel(path), commit=False)
            chosen = [sorted(group, key=lambda ck: (ck[0].rank, ck[0].date)) for group in groups.values()]
            diffs = _diffs(repo, [group[0][0].sha for group in chosen])
            blobs = {line.split("\t", 1)[1]: line.split()[1]
                     for line in text("ls-files", "-s", cwd=repo, env=applier.env).splitlines()}
            # A git process each: two at a time (patches.candidates has no --jobs).
            results = runner.map(lambda g: _applies(repo, applier.env, diffs[g[0][0].sha], blobs), chosen, 2,
                                 lambda g: g[0][0].sha)
            for group, applies in zip(chosen, results, strict=True):
                (best, (fix_kind, fixes)), others = group[0], group[1:]
                found.append(Candidate(
                    release, name, fix_kind, fixes, best.branch, best.sha, best.subject, best.date, applies,
                    f"invoke patches.new --release {release} --component {name} --commit {best.sha[:12]}",
                    tuple(f"{c.branch} {c.sha[:12]}" for c, _ in others)))
    return found


def _same(a: str, b: str) -> bool:
    """Two commit names (full or abbreviated SHAs) for the same commit."""
    return len(a) >= 7 and len(b) >= 7 and (a.startswith(b) or b.startswith(a))


def candidates(project: Project, release: str, names: list[str]) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Candidates for the named components of a release (default: every component)."""
    try:
        database = advisory_database.load(project)
    except FetchError as error:
        console.warn(f"no advisories read ({error.message}): commits are matched by their messages only")
        database = None
    found, about = [], []
    for component in project.components(release, names):
        rows, info = for_component(project, component, database)
        found += rows
        about.append(info)
    if database is not None:
        database.save()
    return found, about


def render(found: list[Candidate], about: list[dict[str, Any]]) -> str:
    parts = []
    if found:
        parts.append(console.table(
            ["#", "component", "kind", "fixes", "branch", "commit", "subject", "applies"],
            [(i, c.component, c.kind, ", ".join(c.fixes), c.branch, (c.commit or "-")[:12], c.subject[:72], c.applies)
             for i, c in enumerate(found, 1)]))
        parts.append("to take one:\n" + "\n".join(f"  {i}: {c.command}" for i, c in enumerate(found, 1)))
    for info in about:
        if not info["history"]:
            parts.append(f"{info['component']} ({info['release']}): no upstream git history: commits could not be "
                         "searched (point git_base or repos at a reachable mirror)")
    return "\n\n".join(parts) if parts else "no candidates"


def as_report(found: list[Candidate], about: list[dict[str, Any]]) -> console.Report:
    """What ``invoke patches.candidates`` prints."""
    return console.Report({"components": about, "candidates": [f.to_dict() for f in found]}, [render(found, about)])
