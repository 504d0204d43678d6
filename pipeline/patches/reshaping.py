"""Reshaping a series: ``patches.refresh`` (onto a new ref, 3-way, per patch unchanged, refreshed, already upstream or a conflict), ``patches.remove`` (refused when the rest no longer applies) and ``patches.renumber``.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.core import console
from pipeline.core.errors import (
    LifecycleConflictError,
    PatchApplyError,
    UsageError,
)
from pipeline.core.git import rev_parse, text
from pipeline.core.releases import Project
from pipeline.patches import upstream
from pipeline.patches.applying import apply_series
from pipeline.patches.lifecycle import (
    CONFLICT,
    NOT_TRIED,
    Operation,
    Pick,
    pristine_worktree,
    refuse_pending,
    run_operation,
    series_lock,
)
from pipeline.patches.patchfile import read_patch
from pipeline.patches.series import NUMBER_RE, all_series
from pipeline.patches.seriesedit import (
    Series,
    load,
    renamed,
    write,
)
from pipeline.sources.fetch import SourceRecord, fetch_component


def refresh(project: Project, release: str, name: str, to: str, dry_run: bool) -> tuple[SourceRecord, list[dict[str, Any]]]:
    """Rebase the component's series onto ``to`` and move its ref there; per patch what happened."""
    component = project.component(release, name)
    refuse_pending(project, release, name)
    old = upstream.tree_at(project, component, component.ref)
    new = upstream.tree_at(project, component, to)
    with series_lock(project, release):
        scratch = tempfile.mkdtemp(prefix="refresh-") if dry_run else None
        wt = Path(scratch) / "worktree" if scratch else project.layout.lifecycle_dir(release, name) / "worktree"
        try:
            pristine_worktree(project, new, wt)
            text("fetch", "--quiet", "--no-tags", "--depth=1", str(project.layout.resolve(old.tree)), "HEAD", cwd=wt)
            if rev_parse(wt, old.commit) is None:
                raise UsageError(f"{project.layout.resolve(old.tree)} is not at {old.commit}",
                                 hint=f"run `invoke fetch --release {release} --component {name}`")
            patches = list(load(project, name, release).patches)
            applied = apply_series(project, component, old, patches, wt, old.commit, commit=True)
            picks = [asdict(Pick(a.committed, a.file, message=read_patch(project, p).message, original=a.file))
                     for a, p in zip(applied, patches)]
            op = Operation("refresh", release, name, str(wt), asdict(new), old_base=old.upstream_revision,
                           ref=to, picks=picks)
            try:
                return new, run_operation(project, op, dry_run)
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


def refresh_all(project: Project, release: str, names: list[str], to: str,
                dry_run: bool) -> tuple[list[dict[str, Any]], LifecycleConflictError | None]:
    """Refresh each component in turn (every one with a series when none is named); the rows of each, and the
    conflict that stopped them (the components after it are left as they are: one worktree to resolve at a time)."""
    names = names or [n for _, n in all_series(project, [release])]
    done: list[tuple[str, list[dict[str, Any]]]] = []
    error = None
    for index, name in enumerate(names):
        try:
            done.append((name, refresh(project, release, name, to, dry_run)[1]))
        except LifecycleConflictError as conflict:
            done.append((name, getattr(conflict, "rows", [])))
            error = conflict
            if names[index + 1:]:
                console.note(f"not refreshed (stopped at the conflict): {', '.join(names[index + 1:])}")
            break
    return refresh_rows(release, done), error


def refresh_rows(release: str, done: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    return [{"release": release, "component": name, "patch": r["original"], "result": r["status"],
             "evidence": r.get("evidence"), "upstream": r.get("upstream")} for name, rs in done for r in rs]


def refresh_report(rows: list[dict[str, Any]]) -> console.Report:
    """What ``invoke patches.refresh`` prints: a row per patch, with the upstream commit that holds it."""
    return console.Report.of([
        console.Column("component"), console.Column("patch"), console.Column("result"),
        console.Column("upstream commit",
                       lambda r: f"{(r['upstream'] or '?')[:12]} ({r['evidence']})" if r["evidence"] else "-"),
    ], rows, empty="no patches")


def _find_patch(project: Project, series: Series, given: str) -> Path:
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
    with series_lock(project, release):
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
    with series_lock(project, release):
        series = load(project, name, release, ordered=False)
        width = max(series.width, len(str(len(series.patches))))
        names = [renamed(p.name, i + 1, width) for i, p in enumerate(series.patches)]
        source = fetch_component(project, component)[0]
        write(project, component, [(n, p.read_bytes()) for n, p in zip(names, series.patches)], source,
              f"renumber {project.layout.repo_rel(series.directory)}")
        return [(p.name, n) for p, n in zip(series.patches, names) if p.name != n]
