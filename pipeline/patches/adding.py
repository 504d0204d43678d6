"""Adding patches to a series: ``patches.new`` (upstream commits cherry-picked with ``-x``, or the commits made on the prepared tree) and ``patches.import`` (a Gerrit change and its ``Depends-On:`` changes of the same component), each as the next patch files, on the lifecycle's operations.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Any

from pipeline.core import console
from pipeline.core.errors import (
    FetchError,
    GitError,
    UncommittedChangesError,
    UsageError,
)
from pipeline.core.git import rev_parse, text
from pipeline.core.redact import public_url
from pipeline.core.releases import Project
from pipeline.patches import upstream
from pipeline.patches.applying import apply_series, series_head, with_trailer
from pipeline.patches.lifecycle import (
    ADDED,
    Operation,
    Pick,
    fetch_into,
    finish,
    message_of,
    refuse_pending,
    run_operation,
    series_lock,
    series_worktree,
    subject_of,
)
from pipeline.patches.patchfile import read_patch
from pipeline.patches.provenance import trailers
from pipeline.patches.seriesedit import (
    load,
)
from pipeline.sources.fetch import fetch_component
from pipeline.sources.mirrors import Mirror

DEPENDS_ON_RE = re.compile(r"^Depends-On:\s*(\S+)\s*$", re.MULTILINE | re.IGNORECASE)


CHANGE_RE = re.compile(r"^(\d+)(?:/(\d+))?$")


def new_from_commits(project: Project, release: str, name: str, commits: list[str]) -> list[dict[str, Any]]:
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
    with series_lock(project, release):
        wt = project.layout.lifecycle_dir(release, name) / "worktree"
        source = series_worktree(project, component, wt)
        picks = []
        for sha in wanted:
            with mirror.lock():
                mirror.pin(sha)
            fetch_into(wt, mirror.path.as_uri(), f"refs/pinned/{sha}")
            picks.append(asdict(Pick(sha, f"upstream commit {sha[:12]} ({subject_of(wt, sha)})", record_origin=True)))
        op = Operation("new", release, name, str(wt), asdict(source), picks=picks)
        return run_operation(project, op)


def new_from_tree(project: Project, release: str, name: str) -> list[dict[str, Any]]:
    """The commits made on top of the prepared tree (branch ``patched``) become new patch files."""
    component = project.component(release, name)
    refuse_pending(project, release, name)
    tree = project.layout.prepared_tree(release, name)
    with series_lock(project, release):
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
        head = series_head(applied, source.commit)
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
                       done=[{"label": f"commit {c[:12]} ({subject_of(tree, c)})", "status": ADDED, "commit": c,
                              "original": None, "evidence": None, "upstream": None} for c in commits])
        return finish(project, op, component, dry_run=False)


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


def import_change(project: Project, release: str, name: str, change: str, gerrit: str | None = None) -> list[dict[str, Any]]:
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
    with series_lock(project, release):
        wt = project.layout.lifecycle_dir(release, name) / "worktree"
        source = series_worktree(project, component, wt)
        picks: list[Pick] = []
        seen: set[int] = set()

        def queue(number: int, patchset: int | None, chain: tuple[int, ...]) -> None:
            if number in seen or str(number) in carried:
                if str(number) in carried and number != int(m.group(1)):
                    console.note(f"Depends-On {number}: already carried by the series")
                return
            seen.add(number)
            ps = patchset or _latest_patchset(url, number, public)
            sha = fetch_into(wt, url, _change_ref(number, ps))
            message = message_of(wt, sha)
            for value in DEPENDS_ON_RE.findall(message):
                dep = _dependency(value, name)
                if dep is None:
                    console.note(f"change {number}: Depends-On {value} is not a change of {name} (or is a Change-Id, "
                                 "which git cannot look up): not imported")
                elif dep not in chain:
                    queue(dep, None, (*chain, number))
            picks.append(Pick(sha, f"Gerrit change {number}/{ps} ({subject_of(wt, sha)})",
                              message=with_trailer(message, "Gerrit-Change", f"{number}/{ps}")))

        queue(int(m.group(1)), int(m.group(2)) if m.group(2) else None, ())
        if not picks:
            raise UsageError(f"Gerrit change {m.group(1)} is already carried by {project.layout.repo_rel(series.directory)}",
                             hint="remove its patch first (invoke patches.remove) to import another patch set")
        op = Operation("import", release, name, str(wt), asdict(source), picks=[asdict(p) for p in picks])
        return run_operation(project, op)


def as_report(rows: list[dict[str, Any]]) -> console.Report:
    """What ``invoke patches.new`` and ``patches.import`` print: a row per patch added (or tried)."""
    return console.Report.of([console.Column("patch", lambda r: r.get("patch") or "-"), console.Column("from", "label"),
                              console.Column("result", "status")], rows, empty="nothing to do")
