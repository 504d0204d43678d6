"""Fetch stage: upstream source for each (release, component) at its configured ref.

Owns the bare git mirrors and the sdist cache under ``cache_dir`` (one lock
per mirror and per sdist, self-healing: a corrupt mirror or a cached file
whose hash no longer matches is removed and fetched again), ref resolution
(branch, tag, full or short SHA, end-of-life tags), versions (pbr's rules on
the mirror's history, the same online and offline; ``PKG-INFO`` for
sdists), the pristine trees at ``<workdir>/src/<release>/<component>/`` and
the release's record of where every tree came from, ``sources.json``.

Callers hold the release lock (``locks.hold(layout.lock(release))``) while
fetching: trees and ``sources.json`` of one release change under it only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.version import Version

from pipeline.core import console, runner
from pipeline.core.errors import FetchError
from pipeline.core.files import (
    clean_staging,
    read_json,
    replace_dir,
    write_if_changed,
)
from pipeline.core.git import clean_at, head_commit, text
from pipeline.core.redact import public_url
from pipeline.core.releases import Component, Project
from pipeline.core.stamps import Stamp
from pipeline.sources.mirrors import (
    Mirror,
    _resolve_git,
    _tree_from_mirror,
    _with_mirror,
)
from pipeline.sources.refs import RefKind, release_version
from pipeline.sources.sdists import _cached_sdist, _tree_from_sdist


@dataclass(frozen=True)
class SourceRecord:
    """Where one pristine tree came from; one entry of sources.json and part of every image record."""

    component: str
    release: str
    ref: str
    kind: str  # branch | tag | sha
    method: str  # git | sdist
    origin: str  # git or sdist URL, without credentials
    commit: str  # HEAD of the pristine tree
    upstream_revision: str | None  # upstream git commit (full SHA for git, pbr.json's for an sdist)
    version: str  # the package version pbr gives this source
    sdist_sha256: str | None = None
    tree: str = ""  # relative to the work directory
    repository: str = ""  # the upstream git repository (without credentials), also for sdists

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceRecord:
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in fields})


def load_sources(project: Project, release: str) -> dict[str, SourceRecord]:
    data = read_json(project.layout.sources_file(release)) or {}
    try:
        return {name: SourceRecord.from_dict(entry) for name, entry in data.get("components", {}).items()}
    except TypeError:
        return {}


# --- git mirrors -----------------------------------------------------------------


# --- sdists ----------------------------------------------------------------------


# --- the stage -------------------------------------------------------------------


def _sdist_version(project: Project, component: Component) -> Version | None:
    if project.settings.source_mode == "git":
        return None
    return release_version(component.ref)


def _stamp_inputs(project: Project, component: Component) -> dict[str, Any]:
    return {"ref": component.ref, "url": component.public_url, "pypi_name": component.pypi_name,
            "mode": project.settings.source_mode, "index": project.network.index_public}


def fetch_component(project: Project, component: Component, dest: Path | None = None) -> tuple[SourceRecord, str]:
    """Bring one pristine tree up to date; return its record and what was done.

    ``dest`` puts the tree elsewhere than the release's (a component at another ref), with its own stamp.
    """
    layout = project.layout
    offline = project.settings.offline
    tree = dest or layout.source_tree(component.release, component.name)
    inputs = _stamp_inputs(project, component)
    stamp = Stamp(layout.stamp("fetch", component.release, component.name) if dest is None
                  else dest.with_name(dest.name + ".stamp.json"))
    previous = stamp.current(inputs)
    # Only the pristine tree's commit matters (trees are cloned from its objects), not its work tree.
    if previous and head_commit(tree) == previous["commit"]:
        record = SourceRecord.from_dict(previous)
        if record.kind != RefKind.BRANCH.value or offline:
            return record, "up to date"
        tip = Mirror(project, component).remote_refs(component.ref).get(f"refs/heads/{component.ref}")
        if tip == record.upstream_revision:
            return record, "up to date (branch unchanged)"

    version = _sdist_version(project, component)
    sdist = None
    if version is not None:
        sdist = _cached_sdist(project, component, version, required=project.settings.source_mode == "sdist")
    stamp.clear()
    if sdist is not None:
        assert version is not None  # an sdist is looked up only for a version
        archive, entry = sdist
        found: list[tuple[str | None, str]] = []
        replace_dir(tree, lambda dest: found.append(_tree_from_sdist(archive, entry, version, dest)))
        revision, pkg_version = found[0]
        record = SourceRecord(
            component=component.name, release=component.release, ref=component.ref, kind=RefKind.TAG.value,
            method="sdist", origin=public_url(entry.url), commit=text("rev-parse", "HEAD", cwd=tree).strip(),
            upstream_revision=revision, version=pkg_version, sdist_sha256=entry.sha256, tree=layout.rel(tree),
            repository=component.public_url,
        )
        action = f"sdist {entry.filename}"
    else:
        mirror = Mirror(project, component)

        def resolve_and_checkout() -> tuple[str, RefKind, str]:
            sha, kind, pkg_version = _resolve_git(mirror)
            tag = component.ref if kind is RefKind.TAG else None
            if not clean_at(tree, sha):
                replace_dir(tree, lambda dest: _tree_from_mirror(mirror.path, sha, tag, dest))
            return sha, kind, pkg_version

        try:
            sha, kind, pkg_version = _with_mirror(mirror, resolve_and_checkout)
        except FetchError as error:
            if version is None:
                raise
            # A release tag the index lacks, and a repository that cannot say otherwise: most likely no tag at all.
            raise FetchError(f"{error.message}; the package index has no sdist {component.pypi_name} {version} "
                             f"either (it has one for every release tag), so {component.ref!r} is likely not a tag of "
                             f"{component.name}", hint=f"check {component.name} in releases/{component.release}/"
                                                       "source-refs.yaml (`pip index versions "
                                                       f"{component.pypi_name}` lists the releases)") from None
        record = SourceRecord(
            component=component.name, release=component.release, ref=component.ref, kind=kind.value, method="git",
            origin=component.public_url, commit=sha, upstream_revision=sha, version=pkg_version, tree=layout.rel(tree),
            repository=component.public_url,
        )
        action = f"git {kind.value} {component.ref} -> {sha[:12]}, version {pkg_version}"
    stamp.record(inputs, asdict(record))
    return record, action


def fetch_one(project: Project, component: Component) -> SourceRecord:
    """Fetch one component, with its progress line (one step of ``fetch`` and of the build DAG)."""
    with console.step(f"fetch {component.name} ({component.release})") as outcome:
        record, outcome["status"] = fetch_component(project, component)
    return record


def write_sources(project: Project, release: str, fetched: dict[str, SourceRecord]) -> None:
    """Update sources.json with the fetched components' records (the others keep theirs)."""
    records = {k: v for k, v in load_sources(project, release).items() if k in project.release(release).refs}
    records.update(fetched)
    write_if_changed(project.layout.sources_file(release), json.dumps({
        "release": release,
        "components": {name: asdict(rec) for name, rec in sorted(records.items())},
    }, indent=2, sort_keys=True) + "\n")


def fetch(project: Project, release: str, names: list[str] | tuple[str, ...] = (), jobs: int = 1) -> dict[str, SourceRecord]:
    """Fetch the named components of a release (all by default) and update sources.json.

    The caller holds the release lock.
    """
    components = project.components(release, names)
    clean_staging(project.layout.workdir / "src" / release)
    records = runner.map(lambda component: fetch_one(project, component), components, jobs, lambda c: c.name)
    fetched = dict(zip([c.name for c in components], records, strict=True))
    write_sources(project, release, fetched)
    return fetched


def as_report(records: dict[str, SourceRecord]) -> console.Report:
    """What ``invoke fetch`` prints: a row per component (the table shortens the commit)."""
    rows = [{"component": r.component, "method": r.method, "ref": r.ref, "commit": r.commit, "version": r.version,
             "tree": r.tree} for r in records.values()]
    return console.Report.of([console.Column("component"), console.Column("method"), console.Column("ref"),
                              console.Column("commit", lambda r: r["commit"][:12]), console.Column("version"),
                              console.Column("tree")], rows)
