"""CI matrix: which (release, service) images, and which testapply series, a change between two commits affects.

Owns the rules, applied to the files that differ between the merge base of
``--base`` and ``--head`` and ``--head`` in this repository:

- ``patches/<C>/<R>/``: a service's series affects that image; a library's
  every image of R whose dependency closure holds the library (the
  closure recorded by the last lock of each service,
  ``<workdir>/.stamps/lock/<R>/<service>.json``; a service without one is
  taken as affected, and the output says so); the series itself is tested.
- ``releases/<R>/`` (refs, release.yaml, the constraints snapshot) and
  ``overrides/<R>/``: every image and every series of R.
- ``dockerfiles/``: a Dockerfile affects what its lookup serves (at head,
  or at base for a file that was removed or is now shadowed): a service's
  own, a release's ``service``, ``release-layer`` or base Dockerfile, or the
  top-level ones, which serve everything; any other file there (the build
  base's ``venv-layer``) affects everything.
- the tool itself (``TOOL_PATHS``): every image and every series.

Releases, services and series are read from the head commit itself (git,
no work tree, no network), so the answer depends only on the two commits
and the local lock stamps.  Each affected series is run beside exactly one
image (its service's, or the first affected image of the release that
holds the library), so no series is tested twice in one run.

May import: core, image.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import ConfigError, GitError, UsageError
from pipeline.core.files import read_json
from pipeline.core.git import rev_parse, text
from pipeline.core.releases import RELEASE_NAME, Project
from pipeline.image.dockerfiles import candidates

TOOL_PATHS = ("pipeline/", "tasks.py", "noxfile.py", "invoke.yaml", "pyproject.toml", "scripts/setup",
              "overrides/build-constraints.txt")
NO_COMMIT = "0" * 40  # what GitHub passes as the commit before a branch's first push
LOOKUPS = ("release-layer", "base-runtime", "base-build", "runtime-packages")  # Dockerfiles every image of a release is built on
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ReleaseAt:
    services: tuple[str, ...]
    components: tuple[str, ...]
    series: tuple[str, ...]  # components with patch files at this commit


@dataclass
class Snapshot:
    """The repository at one commit: its paths and its releases."""

    commit: str
    paths: frozenset[str]
    releases: dict[str, ReleaseAt]

    def dockerfile(self, release: str, names: Iterable[str]) -> str | None:
        """The Dockerfile the lookup picks at this commit (None: the tool's own, outside this repository)."""
        return next((f"dockerfiles/{p}" for p in candidates(release, names) if f"dockerfiles/{p}" in self.paths), None)


def _git(root: Path, *args: str) -> str:
    try:
        return text(*args, cwd=root)
    except GitError as error:
        raise ConfigError(f"{root}: {' '.join(args[:2])} failed: {error.stderr.strip()}",
                          hint="ci.matrix needs the repository's history (actions/checkout with fetch-depth: 0)") from None


def _yaml_at(root: Path, commit: str, path: str, paths: frozenset[str]) -> Any:
    if path not in paths:
        return None
    try:
        return yaml.safe_load(_git(root, "show", f"{commit}:./{path}"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} at {commit[:12]} is not valid YAML: {exc}") from None


def snapshot(root: Path, commit: str) -> Snapshot:
    paths = frozenset(p for p in _git(root, "ls-tree", "-r", "-z", "--name-only", commit).split("\0") if p)
    releases: dict[str, ReleaseAt] = {}
    names = sorted({p.split("/")[1] for p in paths if p.startswith("releases/") and p.count("/") >= 2})
    for release in (r for r in names if RELEASE_NAME.match(r)):
        refs = _yaml_at(root, commit, f"releases/{release}/source-refs.yaml", paths) or {}
        data = _yaml_at(root, commit, f"releases/{release}/release.yaml", paths) or {}
        components = tuple(str(c) for c in refs) if isinstance(refs, dict) else ()
        services = data.get("services", []) if isinstance(data, dict) else []
        if not isinstance(services, list):
            raise ConfigError(f"releases/{release}/release.yaml at {commit[:12]}: services must be a list")
        series = sorted({p.split("/")[1] for p in paths
                         if p.startswith("patches/") and p.endswith(".patch") and p.split("/")[2:3] == [release]})
        releases[release] = ReleaseAt(tuple(str(s) for s in services if str(s) in components), components,
                                      tuple(c for c in series if c in components))
    return Snapshot(commit, paths, releases)


@dataclass
class Matrix:
    base: str
    head: str
    include: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"include": self.include}


class _Collector:
    """Affected images with their reasons, and the series to test."""

    def __init__(self, project: Project, head: Snapshot) -> None:
        self.project, self.head = project, head
        self.images: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.series: set[tuple[str, str]] = set()
        self._closures: dict[tuple[str, str], tuple[str, ...] | None] = {}

    def image(self, release: str, service: str, reason: str, path: str) -> None:
        self.images.setdefault((release, service), {}).setdefault(reason, []).append(path)

    def release(self, release: str, reason: str, path: str) -> None:
        at = self.head.releases[release]
        for service in at.services:
            self.image(release, service, reason, path)
        self.series.update((release, c) for c in at.series)

    def everything(self, reason: str, path: str) -> None:
        for release in self.head.releases:
            self.release(release, reason, path)

    def closure(self, release: str, service: str) -> tuple[str, ...] | None:
        key = (release, service)
        if key not in self._closures:
            data = read_json(self.project.layout.stamp("lock", release, service))
            libraries = data.get("result", {}).get("libraries") if isinstance(data, dict) else None
            self._closures[key] = tuple(libraries) if isinstance(libraries, list) else None
        return self._closures[key]

    def closure_notes(self) -> list[str]:
        unknown: dict[str, list[str]] = {}
        for (release, service), libraries in self._closures.items():
            if libraries is None:
                unknown.setdefault(release, []).append(service)
        layout = self.project.layout
        return [f"{release}: no dependency closure recorded for {', '.join(services)} "
                f"({layout.repo_rel(layout.stamp('lock', release, services[0]).parent)}/), so every library patch of "
                f"{release} counts for them; `invoke build` records it" for release, services in unknown.items()]

    def patch(self, path: str) -> None:
        parts = path.split("/")
        if len(parts) < 4:
            return
        component, release = parts[1], parts[2]
        at = self.head.releases.get(release)
        if at is None or component not in at.components:
            return  # a series of a release or component that head no longer configures builds nothing
        if component in at.services:
            self.image(release, component, "service patches", path)
        else:
            for service in at.services:
                libraries = self.closure(release, service)
                if libraries is None:
                    self.image(release, service, f"library {component} (closure unknown)", path)
                elif component in libraries:
                    self.image(release, service, f"library {component}", path)
        if component in at.series:
            self.series.add((release, component))

    def add(self, path: str, base: Snapshot) -> None:
        """Apply the rule of one changed path."""
        first = path.split("/", 1)[0]
        if any(path == t or (t.endswith("/") and path.startswith(t)) for t in TOOL_PATHS):
            self.everything("the tool changed", path)
        elif first == "patches":
            self.patch(path)
        elif first in ("releases", "overrides") and path.count("/") >= 2:
            release = path.split("/")[1]
            if release in self.head.releases:
                self.release(release, "release configuration" if first == "releases" else "constraint overrides", path)
        elif first == "dockerfiles":
            self.dockerfile(path, base)

    def dockerfile(self, path: str, base: Snapshot) -> None:
        if not path.endswith(".Dockerfile"):
            self.everything("build helper", path)
            return
        for release, at in self.head.releases.items():
            shared = any(path in (snap.dockerfile(release, [name]) for snap in (self.head, base)) for name in LOOKUPS)
            for service in at.services:
                if shared or path in (snap.dockerfile(release, [service, "service"]) for snap in (self.head, base)):
                    self.image(release, service, "Dockerfile", path)


def _reasons(found: dict[str, list[str]]) -> list[str]:
    out = []
    for reason, paths in found.items():
        paths = sorted(set(paths))
        more = f" (+{len(paths) - 1} more)" if len(paths) > 1 else ""
        out.append(f"{reason}: {paths[0]}{more}")
    return out


def _commit(root: Path, ref: str, flag: str) -> str:
    sha = rev_parse(root, ref)
    if sha is None:
        raise UsageError(f"{flag} {ref!r} names no commit of the repository at {root}",
                         hint="give a branch, tag or SHA that the clone has (in CI: actions/checkout with fetch-depth: 0)")
    return sha


def changed_paths(root: Path, base: str, head: str) -> list[str]:
    """Files that differ between the merge base of ``base`` and ``head``, and ``head`` (renames as delete + add)."""
    try:
        since = text("merge-base", base, head, cwd=root).strip()
    except GitError:
        since = base  # unrelated histories: compare the two commits themselves
    out = _git(root, "diff", "--name-only", "--no-renames", "-z", "--relative", since, head, "--")
    return sorted(p for p in out.split("\0") if p)


def _series_owner(collector: _Collector, keys: list[tuple[str, str]], release: str,
                  component: str) -> tuple[str, str] | None:
    """The image a series is tested beside: its own service's, else the first affected one holding the library,
    else any affected one of the release, else the release's first service."""
    if (release, component) in keys:
        return release, component
    services = collector.head.releases[release].services
    same = sorted((k for k in keys if k[0] == release), key=lambda k: services.index(k[1]))
    holders = [k for k in same if (closure := collector.closure(*k)) is None or component in closure]
    if holders or same:
        return (holders or same)[0]
    return (release, services[0]) if services else None


def matrix(project: Project, base: str, head: str) -> Matrix:
    root = project.settings.root
    head_sha = _commit(root, head, "--head")
    collector = _Collector(project, snapshot(root, head_sha))
    if not base:
        base = f"{head_sha}^" if rev_parse(root, f"{head_sha}^") else NO_COMMIT  # a first commit builds everything
    if base == NO_COMMIT:
        result = Matrix(base, head_sha)
        collector.everything("no previous commit", "--base " + NO_COMMIT[:12])
        paths: list[str] = []
        base_snapshot = collector.head
    else:
        base_sha = _commit(root, base, "--base")
        result = Matrix(base_sha, head_sha)
        paths = changed_paths(root, base_sha, head_sha)
        base_snapshot = snapshot(root, base_sha)
    for path in paths:
        collector.add(path, base_snapshot)
    _entries(collector, result)
    return result


def _entries(collector: _Collector, result: Matrix) -> None:
    """The matrix entries, each affected series assigned to one of them, in release and services order."""
    head_sha = collector.head.commit
    order = {(r, s): (i, j) for i, (r, at) in enumerate(sorted(collector.head.releases.items()))
             for j, s in enumerate(at.services)}
    runs: dict[tuple[str, str], list[str]] = {k: [] for k in collector.images}
    for release, component in sorted(collector.series):
        owner = _series_owner(collector, list(runs), release, component)
        if owner is None:
            result.notes.append(f"{release}/{component}: the series changed, but {release} has no service to test it beside")
            continue
        if owner not in runs:
            runs[owner] = []
            collector.image(*owner, "carries the series", f"patches/{component}/{release}/")
        runs[owner].append(component)
    keys = sorted(runs, key=order.__getitem__)
    for release, service in keys:
        for name in (service, *runs[(release, service)]):
            if not NAME_RE.match(name):  # they reach shell commands in CI
                raise ConfigError(f"releases/{release} at {head_sha[:12]}: {name!r} is not a plain component name",
                                  hint="component names are letters, digits, '.', '_' and '-'")
        series = sorted(runs[(release, service)])
        args = ["--release", release, *[a for c in series for a in ("--component", c)]] if series else []
        result.include.append({"release": release, "service": service, "series": series,
                               "testapply": shlex.join(args), "why": _reasons(collector.images[(release, service)])})
    result.notes = collector.closure_notes() + result.notes


def github_output(result: Matrix) -> str:
    """One ``matrix=<json>`` line for ``$GITHUB_OUTPUT`` (what ``strategy.matrix: ${{ fromJSON(...) }}`` takes)."""
    return "matrix=" + json.dumps(result.to_dict(), separators=(",", ":"))
