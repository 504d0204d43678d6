"""Patch stage: discover each series, apply it, and keep the prepared trees.

Owns ``patches/<component>/<release>/*.patch`` as series (their order, and
refusing names that do not give one), applying a series to a commit in a
git index rather than a work tree (fast, and exact: what is checked is what
is built), the prepared trees at ``<workdir>/patched/<release>/<component>/``
(branch ``patched``, one commit per patch with its own author, date and
message), their record (``PreparedTree``: every applied patch with the hash
of its exact bytes and its provenance), and ``patches.check``.

Callers hold the release lock while preparing trees.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.core import console, locks, runner
from pipeline.core.errors import (
    ConfigError,
    GitError,
    PipelineError,
    SeriesLayoutError,
)
from pipeline.core.files import clean_staging, replace_dir, sha256_file
from pipeline.core.git import clean_at, git, text
from pipeline.core.releases import Component, Project
from pipeline.core.stamps import Stamp
from pipeline.patches.applying import apply_series, clone_pristine, series_head
from pipeline.patches.patchfile import read_patch
from pipeline.patches.provenance import (
    provenance,
)
from pipeline.patches.records import AppliedPatch, PreparedTree
from pipeline.sources.fetch import SourceRecord, fetch, fetch_component

PATCH_SUFFIX = ".patch"
NUMBER_RE = re.compile(r"^(\d+)[-_.]")


# --- discovery -------------------------------------------------------------------


def discover(directory: Path) -> tuple[list[Path], list[Path]]:
    """(patches in application order, other files that are reported but not applied).

    Application order is name order, so number prefixes must have one width
    (``9-y.patch`` sorts after ``10-x.patch``) and no number may repeat.
    """
    if not directory.is_dir():
        return [], []
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    patches = [p for p in files if p.suffix == PATCH_SUFFIX]
    others = [p for p in files if p.suffix != PATCH_SUFFIX]
    numbered = {p: m.group(1) for p in patches if (m := NUMBER_RE.match(p.name))}
    widths = {len(n) for n in numbered.values()}
    if len(widths) > 1:
        width = max(widths)
        short = [p.name for p, n in numbered.items() if len(n) < width]
        first_short = next(n for n in numbered.values() if len(n) < width)
        raise SeriesLayoutError(
            f"{directory}: the patches' number prefixes have different widths ({', '.join(sorted(short))} "
            f"against {width} digits), so name order is not the intended order",
            hint=f"zero-pad the numbers to {width} digits (e.g. {short[0]} -> "
                 f"{numbered_name(int(first_short), short[0], width)}), or run invoke patches.renumber",
        )
    seen: dict[int, str] = {}
    for path, number in numbered.items():
        if int(number) in seen:
            raise SeriesLayoutError(f"{directory}: {seen[int(number)]} and {path.name} carry the same number {number}",
                                    hint="give each patch its own number, or run invoke patches.renumber")
        seen[int(number)] = path.name
    return patches, others


def numbered_name(number: int, name: str, width: int = 4) -> str:
    """``name`` with its number prefix replaced by ``number`` at ``width`` digits."""
    rest = NUMBER_RE.sub("", name, count=1) if NUMBER_RE.match(name) else name
    return f"{number:0{width}d}-{rest}"


def all_series(project: Project, releases: list[str] | None = None) -> list[tuple[str, str]]:
    """Every (release, component) that has a patch directory, validated against source-refs."""
    found = []
    wanted = list(releases) if releases else list(project.releases)
    for release in wanted:
        project.release(release)
    patches_dir = project.settings.root / "patches"
    if not patches_dir.is_dir():
        return []
    # Dot-directories are staging directories of a series being rewritten (patches.refresh, ...).
    for comp_dir in sorted(p for p in patches_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for rel_dir in sorted(p for p in comp_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            release = rel_dir.name
            if release not in project.releases:
                raise ConfigError(f"{rel_dir}: patches for unknown release {release!r}",
                                  hint=f"known releases: {', '.join(project.releases)}")
            if release not in wanted:
                continue
            if comp_dir.name not in project.release(release).refs:
                raise ConfigError(
                    f"{rel_dir}: patches for {comp_dir.name}, which has no ref in releases/{release}/source-refs.yaml",
                    hint=f"add `{comp_dir.name}: <ref>` there, or move the patches",
                )
            found.append((release, comp_dir.name))
    return found


# --- records ---------------------------------------------------------------------


# --- applying ----------------------------------------------------------------------


# --- the stage ---------------------------------------------------------------------


def _series_inputs(project: Project, component: Component, source: SourceRecord) -> tuple[list[Path], list[Path], dict[str, Any]]:
    patches, others = discover(project.layout.series_dir(component.name, component.release))
    inputs = {"base": source.commit, "source": asdict(source),
              "patches": [(project.layout.repo_rel(p), sha256_file(p)) for p in patches]}
    return patches, others, inputs


def prepare(project: Project, component: Component, source: SourceRecord) -> tuple[PreparedTree, str]:
    """Bring the prepared tree of one component up to date; return its record and what was done."""
    layout = project.layout
    patches, others, inputs = _series_inputs(project, component, source)
    dest = layout.prepared_tree(component.release, component.name)
    stamp = Stamp(layout.stamp("patch", component.release, component.name))
    previous = stamp.current(inputs)
    if previous and clean_at(dest, previous["head"]):
        return PreparedTree.from_dict(previous), "up to date"
    stamp.clear()
    applied: list[AppliedPatch] = []

    def check_out(tree: Path) -> None:
        applied[:] = apply_series(project, component, source, patches, tree, source.commit, commit=True)
        head = series_head(applied, source.commit)
        text("checkout", "--quiet", "-f", "-B", "patched", head, cwd=tree)
        text("clean", "--quiet", "-f", "-d", "-x", cwd=tree)

    def build(staging: Path) -> None:
        clone_pristine(project, source, staging)
        check_out(staging)

    if not _update_in_place(dest, source.commit, check_out):
        replace_dir(dest, build)  # a failure leaves the previous prepared tree untouched
    prepared = PreparedTree(
        component=component.name, release=component.release, tree=layout.rel(dest), base_commit=source.commit,
        head=text("rev-parse", "HEAD", cwd=dest).strip(),
        head_date=int(text("log", "-1", "--format=%ct", "HEAD", cwd=dest).strip()), source=source, patches=tuple(applied),
        ignored=tuple(layout.repo_rel(p) for p in others),
    )
    stamp.record(inputs, asdict(prepared))
    return prepared, f"{len(applied)} patch(es) applied"


def _update_in_place(tree: Path, base: str, check_out: Callable[[Path], None]) -> bool:
    """Move an earlier prepared tree of the same base to the new series; False where it must be made anew.

    The series is applied in a private index, so a patch that fails leaves
    the tree as it was; only then does git check out the new head, writing
    the files that differ, not all of them (nova has 10,000).  Anything git
    cannot do here (no such tree, another base, the lock file of a checkout
    that was killed) falls back to a fresh clone; the stamp, cleared before,
    makes a tree that was left half-way be redone by the next run.
    """
    if not (tree / ".git").is_dir():
        return False
    try:
        git("cat-file", "-e", f"{base}^{{commit}}", cwd=tree)
        check_out(tree)
    except GitError:
        return False
    return True


def patch_one(project: Project, component: Component, source: SourceRecord) -> PreparedTree:
    """Prepare one component's tree, with its progress line (one step of ``patch`` and of the build DAG)."""
    with console.step(f"patch {component.name} ({component.release})") as outcome:
        prepared, outcome["status"] = prepare(project, component, source)
    for name in prepared.ignored:
        console.warn(f"{name}: not a .patch file, not applied")
    return prepared


def patch(project: Project, release: str, names: list[str] | tuple[str, ...] = (), jobs: int = 1) -> list[PreparedTree]:
    """Fetch and patch the named components of a release (all by default); the caller holds the release lock."""
    records = fetch(project, release, names, jobs)
    clean_staging(project.layout.workdir / "patched" / release)
    components = project.components(release, names)
    return runner.map(lambda component: patch_one(project, component, records[component.name]), components, jobs,
                      lambda c: c.name)


# --- listing and checking ----------------------------------------------------------


def list_patches(project: Project, releases: list[str] | None = None) -> list[dict[str, Any]]:
    rows = []
    for release, component in all_series(project, releases):
        patches, others = discover(project.layout.series_dir(component, release))
        for p in patches:
            meta = read_patch(project, p)
            origin = provenance(meta)
            rows.append({"release": release, "component": component, "patch": project.layout.repo_rel(p),
                         "subject": meta.subject, "author": meta.author, "type": origin.patch_type,
                         "change_id": origin.change_id, "cves": list(origin.cves)})
        for p in others:
            rows.append({"release": release, "component": component, "patch": project.layout.repo_rel(p),
                         "subject": "(ignored: not a .patch file)", "author": "", "type": "", "change_id": None,
                         "cves": []})
    return rows


@dataclass(frozen=True)
class CheckResult:
    release: str
    component: str
    patches: int
    ok: bool
    detail: str
    exit_code: int = 0


def check(project: Project, releases: list[str] | None = None) -> list[CheckResult]:
    """Apply every series to its ref in a private index; nothing is written to any tree."""
    results = []
    for release, name in all_series(project, releases):
        component = project.component(release, name)
        try:
            patches, _ = discover(project.layout.series_dir(name, release))
            with locks.hold(project.layout.lock(release), f"the work directory of {release}"):
                source, _ = fetch_component(project, component)
            repo = project.layout.resolve(source.tree)
            apply_series(project, component, source, patches, repo, source.commit, commit=False, scratch_objects=True)
            results.append(CheckResult(release, name, len(patches), True, "applies"))
        except PipelineError as error:
            results.append(CheckResult(release, name, len(list(project.layout.series_dir(name, release).glob("*.patch"))),
                                       False, str(error), error.exit_code))
    return results


def patch_report(prepared: list[PreparedTree]) -> console.Report:
    """What ``invoke patch`` prints: a row per prepared tree (the table shortens the commits)."""
    rows = [{"component": p.component, "patches": len(p.patches), "base": p.base_commit, "head": p.head, "tree": p.tree}
            for p in prepared]
    return console.Report.of([console.Column("component"), console.Column("patches"),
                              console.Column("base", lambda r: r["base"][:12]),
                              console.Column("head", lambda r: r["head"][:12]), console.Column("tree")], rows)


def list_report(rows: list[dict[str, Any]]) -> console.Report:
    """What ``invoke patches.list`` prints."""
    return console.Report.of([console.Column(h) for h in ("release", "component", "patch", "type", "subject")], rows,
                             empty="no patches")


def check_report(results: list[CheckResult]) -> console.Report:
    """What ``invoke patches.check`` prints: every field in the JSON, ok or FAILED in the table."""
    return console.Report.of([console.Column("release"), console.Column("component"), console.Column("patches"),
                              console.Column("result", lambda r: "ok" if r["ok"] else "FAILED")],
                             [r.__dict__ for r in results], empty="no patch series")
