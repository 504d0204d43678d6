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
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.core import console, locks
from pipeline.core.errors import (
    FetchError,
    GitError,
    LifecycleConflictError,
    PatchApplyError,
    UncommittedChangesError,
    UsageError,
)
from pipeline.core.files import read_json, remove, write_json
from pipeline.core.git import git, rev_parse, text
from pipeline.core.redact import public_url
from pipeline.core.releases import Component, Project
from pipeline.patches import upstream
from pipeline.patches.patchfile import trailers
from pipeline.patches.series import (
    NUMBER_RE,
    apply_series,
    clone_pristine,
    read_patch,
    with_trailer,
)
from pipeline.patches.seriesedit import (
    committer_env,
    format_patch,
    load,
    renamed,
    verify,
    write,
)
from pipeline.sources.fetch import Mirror, SourceRecord, fetch_component

STATE_FILE = "state.json"
BRANCH = "lifecycle"
DEPENDS_ON_RE = re.compile(r"^Depends-On:\s*(\S+)\s*$", re.MULTILINE | re.IGNORECASE)
CHANGE_RE = re.compile(r"^(\d+)(?:/(\d+))?$")

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
    source: dict  # the SourceRecord the finished series is checked against
    old_base: str | None = None  # refresh: the upstream revision the series was made for
    ref: str | None = None  # refresh: the new ref
    picks: list[dict] = field(default_factory=list)  # still to do; the first is in progress after a conflict
    done: list[dict] = field(default_factory=list)  # {label, status, commit, original, evidence, upstream}
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


def _lock(project: Project, release: str):
    return locks.hold(project.layout.lock(release), f"the work directory of {release}")


# --- the worktree ------------------------------------------------------------------------


def _worktree(project: Project, source: SourceRecord, dest: Path) -> None:
    remove(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clone_pristine(project, source, dest)
    text("checkout", "--quiet", "-f", "-B", BRANCH, source.commit, cwd=dest)


def _series_worktree(project: Project, component: Component, dest: Path) -> SourceRecord:
    """A worktree at the release's ref with the current series applied as commits; the ref's source."""
    source = fetch_component(project, component)[0]
    _worktree(project, source, dest)
    applied = apply_series(project, component, source, list(load(project, component.name, component.release).patches),
                           dest, source.commit, commit=True)
    head = applied[-1].commit if applied else source.commit
    text("reset", "--quiet", "--hard", head, cwd=dest)
    return source


def _fetch_into(worktree: Path, url: str, ref: str) -> str:
    """Fetch ``ref`` with its parent (enough for a 3-way cherry-pick) from ``url``; its SHA."""
    text("fetch", "--quiet", "--no-tags", "--depth=2", url, ref, cwd=worktree)
    sha = text("rev-parse", "FETCH_HEAD", cwd=worktree).strip()
    text("update-ref", f"refs/picks/{sha}", sha, cwd=worktree)  # keep it reachable until the operation ends
    return sha


def _subject(repo: Path, commit: str) -> str:
    return text("log", "-1", "--format=%s", commit, cwd=repo).strip()


def _message(repo: Path, commit: str) -> str:
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


def _pick(project: Project, op: Operation, pick: Pick, hist: upstream.History | None, dry_run: bool) -> dict:
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


def _empty(pick: Pick) -> dict:
    return {"label": pick.label, "status": UPSTREAM if pick.original else EMPTY, "commit": None,
            "original": pick.original, "evidence": "empty" if pick.original else None, "upstream": None}


def _picked(project: Project, op: Operation, pick: Pick, date: str, resolved: bool) -> dict:
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


def _run(project: Project, op: Operation, dry_run: bool = False) -> list[dict]:
    """Do the remaining picks, then write the series; the result rows."""
    component = project.component(op.release, op.component)
    hist = upstream.history(project, component) if op.kind == "refresh" else None
    while op.picks:
        result = _pick(project, op, Pick(**op.picks[0]), hist, dry_run)
        op.done.append(result)
        op.picks.pop(0)
    return _finish(project, op, component, dry_run)


def _finish(project: Project, op: Operation, component: Component, dry_run: bool) -> list[dict]:
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


def resume(project: Project, release: str, name: str, abort: bool) -> list[dict]:
    """``--continue`` (or ``--abort``) the operation that stopped on a conflict for (release, component)."""
    project.component(release, name)  # an unknown component is named as such
    state = read_json(_state_path(project, release, name))
    if not state:
        raise UsageError(f"{name} ({release}): no stopped patches.new, patches.import or patches.refresh to "
                         f"{'abort' if abort else 'continue'}")
    op = Operation(**state)
    with _lock(project, release):
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
        return _run(project, op)


# --- patches.new ---------------------------------------------------------------------------


def new_from_commits(project: Project, release: str, name: str, commits: list[str]) -> list[dict]:
    """Cherry-pick upstream commits (any branch) after the release's series, as new patch files."""
    component = project.component(release, name)
    refuse_pending(project, release, name)
    hist = upstream.require_history(project, component, "--commit")
    mirror = Mirror(project, component)
    wanted = []
    for given in commits:
        sha = hist.resolve(given)
        if sha is None:
            raise FetchError(f"{component.label}: commit {given} is not in {component.public_url} (on any branch)",
                             hint="give a commit SHA of the upstream repository (git log on its branches)")
        if len(text("rev-list", "--parents", "-n1", sha, cwd=hist.path).split()) > 2:
            raise UsageError(f"{given} is a merge commit", hint="name the commits the merge brought in, one --commit each")
        wanted.append(sha)
    with _lock(project, release):
        wt = project.layout.lifecycle_dir(release, name) / "worktree"
        source = _series_worktree(project, component, wt)
        picks = []
        for sha in wanted:
            with mirror.lock():
                mirror.pin(sha)
            _fetch_into(wt, mirror.path.as_uri(), f"refs/pinned/{sha}")
            picks.append(asdict(Pick(sha, f"upstream commit {sha[:12]} ({_subject(wt, sha)})", record_origin=True)))
        op = Operation("new", release, name, str(wt), asdict(source), picks=picks)
        return _run(project, op)


def new_from_tree(project: Project, release: str, name: str) -> list[dict]:
    """The commits made on top of the prepared tree (branch ``patched``) become new patch files."""
    component = project.component(release, name)
    refuse_pending(project, release, name)
    tree = project.layout.prepared_tree(release, name)
    with _lock(project, release):
        tip = rev_parse(tree, "refs/heads/patched") if (tree / ".git").exists() else None
        if tip is None:
            raise UsageError(f"{project.layout.rel(tree)} has no branch patched",
                             hint=f"run `invoke patch --release {release} --component {name}`, commit your change "
                                  "there, then rerun")
        dirty = text("status", "--porcelain", "--untracked-files=no", cwd=tree).split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        if dirty:
            raise UncommittedChangesError(f"{tree} has uncommitted changes in {', '.join(dirty)}: only commits become patches",
                                          hint="commit them (git commit) or drop them (git checkout -- FILE), then rerun")
        source = fetch_component(project, component)[0]
        series = load(project, name, release)
        # The series' commits are reproducible: applying it again gives the SHAs `invoke patch` made.
        applied = apply_series(project, component, source, list(series.patches), tree, source.commit, commit=True)
        head = applied[-1].commit if applied else source.commit
        try:
            text("merge-base", "--is-ancestor", head, tip, cwd=tree)
        except GitError:
            raise UsageError(f"the branch patched of {tree} does not start from the current series of {name} ({release})",
                             hint=f"run `invoke patch --release {release} --component {name}` (it resets the tree), "
                                  "then commit your change on top") from None
        commits = text("rev-list", "--reverse", f"{head}..{tip}", cwd=tree).split()
        if not commits:
            raise UsageError(f"no commits on top of the series in {tree} (branch patched)",
                             hint="commit your change there first (git commit)")
        merges = [c for c in commits if len(text("rev-list", "--parents", "-n1", c, cwd=tree).split()) > 2]
        if merges:
            raise UsageError(f"{tree}: commit {merges[0][:12]} is a merge", hint="make the history linear (git rebase)")
        op = Operation("new", release, name, str(tree), asdict(source),
                       done=[{"label": f"commit {c[:12]} ({_subject(tree, c)})", "status": ADDED, "commit": c,
                              "original": None, "evidence": None, "upstream": None} for c in commits])
        return _finish(project, op, component, dry_run=False)


# --- patches.import -------------------------------------------------------------------------


def _change_ref(number: int, patchset: int) -> str:
    return f"refs/changes/{number % 100:02d}/{number}/{patchset}"


def _latest_patchset(url: str, number: int, public: str) -> int:
    try:
        out = text("ls-remote", url, f"refs/changes/{number % 100:02d}/{number}/*")
    except GitError as exc:
        raise FetchError(f"cannot query Gerrit at {public}: {exc.stderr.strip()}",
                         hint="check gerrit_base (or --gerrit) and network access") from None
    sets = [int(m.group(1)) for line in out.splitlines() if (m := re.search(r"/(\d+)$", line.split("\t")[-1]))]
    if not sets:
        raise FetchError(f"Gerrit change {number} has no patch sets at {public} ({_change_ref(number, 0)[:-2]}/*)",
                         hint="check the change number and that it belongs to this component")
    return max(sets)


def _dependency(value: str, component: str) -> int | None:
    """The change number a ``Depends-On:`` value names, if it is a change of ``component`` (or a bare number)."""
    if value.isdigit():
        return int(value)
    m = re.search(r"/c/(?:[^+]*/)?([^/+]+)/\+/(\d+)", value) or re.search(r"/#/c/()(\d+)", value)
    if m and (not m.group(1) or m.group(1) == component):
        return int(m.group(2))
    return None


def import_change(project: Project, release: str, name: str, change: str, gerrit: str | None = None) -> list[dict]:
    """A Gerrit change (and the changes of this component it depends on) as the next patch files."""
    component = project.component(release, name)
    refuse_pending(project, release, name)
    m = CHANGE_RE.match(change.strip())
    if not m:
        raise UsageError(f"--change {change!r} is not a change number", hint="e.g. --change 912345 or --change 912345/3")
    url = project.settings.gerrit_url(name, gerrit)
    public = public_url(url)
    series = load(project, name, release)
    carried = {v.split("/")[0] for p in series.patches for k, v in trailers(read_patch(project, p).message)
               if k == "Gerrit-Change"}
    with _lock(project, release):
        wt = project.layout.lifecycle_dir(release, name) / "worktree"
        source = _series_worktree(project, component, wt)
        picks: list[Pick] = []
        seen: set[int] = set()

        def queue(number: int, patchset: int | None, chain: tuple[int, ...]) -> None:
            if number in seen or str(number) in carried:
                if str(number) in carried and number != int(m.group(1)):
                    console.note(f"Depends-On {number}: already carried by the series")
                return
            seen.add(number)
            ps = patchset or _latest_patchset(url, number, public)
            sha = _fetch_into(wt, url, _change_ref(number, ps))
            message = _message(wt, sha)
            for value in DEPENDS_ON_RE.findall(message):
                dep = _dependency(value, name)
                if dep is None:
                    console.note(f"change {number}: Depends-On {value} is not a change of {name} (or is a Change-Id, "
                                 "which git cannot look up): not imported")
                elif dep not in chain:
                    queue(dep, None, (*chain, number))
            picks.append(Pick(sha, f"Gerrit change {number}/{ps} ({_subject(wt, sha)})",
                              message=with_trailer(message, "Gerrit-Change", f"{number}/{ps}")))

        queue(int(m.group(1)), int(m.group(2)) if m.group(2) else None, ())
        if not picks:
            raise UsageError(f"Gerrit change {m.group(1)} is already carried by {project.layout.repo_rel(series.directory)}",
                             hint="remove its patch first (invoke patches.remove) to import another patch set")
        op = Operation("import", release, name, str(wt), asdict(source), picks=[asdict(p) for p in picks])
        return _run(project, op)


# --- patches.refresh ------------------------------------------------------------------------


def refresh(project: Project, release: str, name: str, to: str, dry_run: bool) -> tuple[SourceRecord, list[dict]]:
    """Rebase the component's series onto ``to`` and move its ref there; per patch what happened."""
    component = project.component(release, name)
    refuse_pending(project, release, name)
    old = upstream.tree_at(project, component, component.ref)
    new = upstream.tree_at(project, component, to)
    with _lock(project, release):
        scratch = tempfile.mkdtemp(prefix="refresh-") if dry_run else None
        wt = Path(scratch) / "worktree" if scratch else project.layout.lifecycle_dir(release, name) / "worktree"
        try:
            _worktree(project, new, wt)
            text("fetch", "--quiet", "--no-tags", "--depth=1", str(project.layout.resolve(old.tree)), "HEAD", cwd=wt)
            if rev_parse(wt, old.commit) is None:
                raise UsageError(f"{project.layout.resolve(old.tree)} is not at {old.commit}",
                                 hint=f"run `invoke fetch --release {release} --component {name}`")
            patches = list(load(project, name, release).patches)
            applied = apply_series(project, component, old, patches, wt, old.commit, commit=True)
            picks = [asdict(Pick(a.commit, a.file, message=read_patch(project, p).message, original=a.file))
                     for a, p in zip(applied, patches)]
            op = Operation("refresh", release, name, str(wt), asdict(new), old_base=old.upstream_revision,
                           ref=to, picks=picks)
            try:
                return new, _run(project, op, dry_run)
            except LifecycleConflictError as error:
                rows = op.done + [{"label": op.picks[0]["label"], "status": CONFLICT, "original": op.picks[0]["original"],
                                   "commit": None, "evidence": None, "upstream": None}]
                rows += [{"label": p["label"], "status": NOT_TRIED, "original": p["original"], "commit": None,
                          "evidence": None, "upstream": None} for p in op.picks[1:]]
                error.rows = rows
                raise
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)


# --- patches.remove / patches.renumber -----------------------------------------------------------


def _find_patch(project: Project, series, given: str) -> Path:
    for path in series.patches:
        if given in (path.name, project.layout.repo_rel(path), str(path)) or \
                (given.isdigit() and (m := NUMBER_RE.match(path.name)) and int(m.group(1)) == int(given)):
            return path
    raise UsageError(f"no patch {given!r} in {project.layout.repo_rel(series.directory)}",
                     hint="give its file name, repository path or number; patches: "
                          + (", ".join(p.name for p in series.patches) or "none"))


def remove_patch(project: Project, release: str, name: str, given: str, renumber: bool) -> list[tuple[str, str]]:
    """Remove one patch (and with ``renumber`` close the gap); (old, new) names of what remains renamed."""
    component = project.component(release, name)
    refuse_pending(project, release, name)
    with _lock(project, release):
        series = load(project, name, release)
        target = _find_patch(project, series, given)
        remaining = [p for p in series.patches if p != target]
        names = [renamed(p.name, i + 1, series.width) if renumber else p.name for i, p in enumerate(remaining)]
        source = fetch_component(project, component)[0]
        label = project.layout.repo_rel(target)
        try:
            write(project, component, [(n, p.read_bytes()) for n, p in zip(names, remaining)], source, f"remove {label}")
        except PatchApplyError as error:
            raise PatchApplyError(f"refused to remove {label}: the rest of the series would no longer apply: {error.message}",
                                  hint="nothing was changed; a later patch needs it: remove or refresh that one too") from None
        console.note(f"removed: {label}")
        return [(p.name, n) for p, n in zip(remaining, names) if p.name != n]


def renumber(project: Project, release: str, name: str) -> list[tuple[str, str]]:
    """Number the series 1..n in its order at one width; (old, new) of every renamed file."""
    component = project.component(release, name)
    refuse_pending(project, release, name)
    with _lock(project, release):
        series = load(project, name, release, ordered=False)
        width = max(series.width, len(str(len(series.patches))))
        names = [renamed(p.name, i + 1, width) for i, p in enumerate(series.patches)]
        source = fetch_component(project, component)[0]
        write(project, component, [(n, p.read_bytes()) for n, p in zip(names, series.patches)], source,
              f"renumber {project.layout.repo_rel(series.directory)}")
        return [(p.name, n) for p, n in zip(series.patches, names) if p.name != n]
