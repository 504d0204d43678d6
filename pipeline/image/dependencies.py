"""Which packages each image installs: a lock per service, and the release's shared set.

Owns a service's dependency closure under the release's effective
constraints (its requirements, and those of every patched library it pulls
in, found from the resolved closure itself, so a patched library reaches
exactly the images that depend on it), and the release's shared set: the
locked files every service of the release has in common, installed once in
the release layer.  Results are stamped by their inputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pipeline.core import runner
from pipeline.core.errors import ConfigError
from pipeline.core.files import write_if_changed
from pipeline.core.releases import Project
from pipeline.core.stamps import Stamp
from pipeline.image.wheels import (
    LockedFile,
    Target,
    compile_lock,
    fill_index_cache,
    locked_files,
)
from pipeline.patches.records import PreparedTree


@dataclass(frozen=True)
class ServiceLock:
    service: str
    libraries: tuple[str, ...]  # patched libraries in the service's closure, in source-refs order
    files: tuple[LockedFile, ...]  # every other package, locked to one file each

    @classmethod
    def from_dict(cls, data: dict) -> ServiceLock:
        return cls(data["service"], tuple(data["libraries"]), tuple(LockedFile(**f) for f in data["files"]))


def _requirements(project: Project, tree: PreparedTree) -> list[Path]:
    path = project.layout.resolve(tree.tree) / "requirements.txt"
    return [path] if path.exists() else []


_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?", re.MULTILINE)


def _service_requirements(project: Project, release: str, service: PreparedTree, constraints_text: str) -> list[Path]:
    """The service's own requirements, and what runtime.yaml adds to its image (a file uv reads).

    What runtime.yaml adds must be pinned: by the release's effective
    constraints, or by its own exact pin.
    """
    declared = project.release(release).runtime.of(service.component).python
    pinned = {canonicalize_name(name) for name in _PINNED.findall(constraints_text)}
    for item in declared:
        requirement = Requirement(item.value)
        if canonicalize_name(requirement.name) not in pinned and not any(
                s.operator in ("==", "===") for s in requirement.specifier):
            raise ConfigError(f"{item.where}: {requirement.name} is not pinned by the upper-constraints of {release}",
                              hint=f"pin it there ({requirement.name}==<version>), or in overrides/{release}/constraints.txt")
    own = _requirements(project, service)
    if not declared:
        return own
    path = project.layout.runtime_requirements(release, service.component)
    write_if_changed(path, "# runtime.yaml: what the image needs to run in production\n"
                     + "".join(f"{item.value}\n" for item in declared))
    return [*own, path]


# Marker variables Target does not know; a requirement that uses one is resolved, not judged here.
_UNKNOWN_MARKER_VARIABLES = ("python_full_version", "implementation_version", "platform_release", "platform_version")
_COMMENT = re.compile(r"(^|\s)#.*$")


def _already_met(requirements: list[Path], packages: list[dict], target: Target) -> bool:
    """Whether the resolved ``packages`` meet every line of ``requirements`` as they are.

    Then a resolution with those lines added finds the same packages: each
    one names a package already chosen, at a version it allows, and brings in
    nothing new.  Anything this cannot judge from the names and versions
    alone (extras, URLs, options, a marker on an unknown variable) counts as
    not met, and is resolved.
    """
    try:
        chosen = {canonicalize_name(p["name"]): Version(p["version"]) for p in packages}
    except InvalidVersion:
        return False
    environment = target.marker_environment()
    for path in requirements:
        for line in path.read_text().splitlines():
            text = _COMMENT.sub("", line).strip()
            if not text:
                continue
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                return False
            if requirement.url or requirement.extras:
                return False
            if requirement.marker is not None:
                if any(name in str(requirement.marker) for name in _UNKNOWN_MARKER_VARIABLES):
                    return False
                if not requirement.marker.evaluate(environment):
                    continue
            version = chosen.get(canonicalize_name(requirement.name))
            if version is None or not requirement.specifier.contains(version, prereleases=True):
                return False
    return True


def _lock_stamp(project: Project, release: str, service: PreparedTree, libraries: dict[str, PreparedTree],
                constraints_text: str, target: Target) -> tuple[Stamp, dict]:
    """The stamp of the service's lock, and the inputs it is current for."""
    inputs = {
        "service": [service.component, service.source.version,
                    "".join(p.read_text() for p in _service_requirements(project, release, service, constraints_text))],
        "libraries": {n: [t.source.version, "".join(p.read_text() for p in _requirements(project, t))]
                      for n, t in libraries.items()},
        "constraints": constraints_text, "target": asdict(target), "index": project.network.index_public,
    }
    return Stamp(project.layout.stamp("lock", release, service.component)), inputs


def _library_pins(project: Project, libraries: dict[str, PreparedTree]) -> str:
    """Each library at its upstream version, so a closure matches what gets installed (an unreleased .dev
    version is not on the index and stays unpinned)."""
    return "".join(f"{project.settings.pypi_name(n)}=={t.source.version}\n" for n, t in libraries.items()
                   if ".dev" not in t.source.version)


def release_locks(project: Project, release: str, services: list[PreparedTree], libraries: dict[str, PreparedTree],
                  constraints_text: str, target: Target, workers: int) -> dict[str, ServiceLock]:
    """Every service's lock, resolved side by side.

    When more than one must be resolved, one resolution of all the
    services' and libraries' requirements together fills uv's cache with
    every index page they read (``fill_index_cache``), and each lock then
    resolves from the cache: on this site six online resolutions of 2025.2
    cost 22 s, that one 4-5 s and each lock after it 0.2 s.  The services of a
    release are co-installable by construction (upper-constraints pins one
    version of each package), so they resolve together; when they do not,
    each lock is resolved online as it would be alone.
    """
    def is_stale(service: PreparedTree) -> bool:
        stamp, inputs = _lock_stamp(project, release, service, libraries, constraints_text, target)
        return not stamp.current(inputs)

    stale = [s for s in services if is_stale(s)]
    from_cache = len(stale) > 1 and not project.settings.offline and fill_index_cache(
        project, [*(r for tree in stale for r in _service_requirements(project, release, tree, constraints_text)),
                  *(r for tree in libraries.values() for r in _requirements(project, tree))],
        constraints_text + _library_pins(project, libraries), target)

    def lock_of(service: PreparedTree) -> ServiceLock:
        return service_lock(project, release, service, libraries, constraints_text, target, from_cache)

    locks = runner.map(lock_of, services, workers, lambda s: s.component)
    return {s.component: lock for s, lock in zip(services, locks, strict=True)}


def service_lock(project: Project, release: str, service: PreparedTree, libraries: dict[str, PreparedTree],
                 constraints_text: str, target: Target, from_cache: bool = False) -> ServiceLock:
    """The service's lock, resolved only when its inputs changed (``from_cache``: see ``compile_lock``)."""
    settings = project.settings
    order = [name for name in project.release(release).refs if name in libraries]
    stamp, inputs = _lock_stamp(project, release, service, libraries, constraints_text, target)
    cached = stamp.current(inputs)
    if cached:
        return ServiceLock.from_dict(cached)

    by_pypi = {canonicalize_name(settings.pypi_name(n)): n for n in libraries}
    pins = _library_pins(project, libraries)
    hint = f"adjust overrides/{release}/constraints.txt (an override may conflict with another pin)"
    needed: list[str] = []
    packages: list[dict] = []
    for _ in range(len(libraries) + 1):  # each round can only add libraries
        reqs = _service_requirements(project, release, service, constraints_text) + \
            [r for n in needed for r in _requirements(project, libraries[n])]
        packages = compile_lock(project, reqs, constraints_text + pins, target,
                                f"{service.component} ({release})", hint, from_cache)
        found = [n for n in order if n in {by_pypi[canonicalize_name(p["name"])] for p in packages
                                          if canonicalize_name(p["name"]) in by_pypi}]
        if found == needed:
            break
        newly = [r for n in found if n not in needed for r in _requirements(project, libraries[n])]
        met = set(needed) <= set(found) and _already_met(newly, packages, target)
        needed = found
        if met:  # usually so (a patch seldom changes a library's requirements): one uv run saved
            break
    else:
        raise ConfigError(f"{service.component} ({release}): the patched libraries' closure does not settle")
    built_here = set(by_pypi) | {canonicalize_name(settings.pypi_name(service.component))}
    files = tuple(f for f in locked_files(packages, target) if f.name not in built_here)
    lock = ServiceLock(service.component, tuple(needed), files)
    stamp.record(inputs, {"service": lock.service, "libraries": list(lock.libraries),
                          "files": [asdict(f) for f in lock.files]})
    return lock


@dataclass(frozen=True)
class SharedLevel:
    """One shared layer of a release: what every service of ``services`` installs, beyond the levels before."""

    services: tuple[str, ...]
    files: tuple[LockedFile, ...]
    packages: tuple[str, ...] = ()  # Debian packages every service of the group needs, beyond the levels before


def shared_levels(locks: list[ServiceLock],
                  packages: Mapping[str, frozenset[str]] | None = None) -> tuple[SharedLevel, ...]:
    """The release's shared layers, as a chain of ever smaller groups of services.

    Level 0 holds what all services install (identically: same file); each
    next level drops the one service whose absence lets the others share the
    most more (in bytes of package files), and holds
    what the remaining group has in common beyond the levels before.  A
    service's image stacks the levels of every group it belongs to, so no
    image carries a package it does not install, and what several services
    share is stored once.  The Debian packages of ``packages`` (service ->
    names) are shared the same way along the same chain of groups; what no
    level holds is the service's own.
    """
    packages = packages or {}
    by_service = {lock.service: {f.sha256: f for f in lock.files} for lock in locks}
    size = {f.sha256: f.size or 1 for lock in locks for f in lock.files}

    def weight(shas: set[str]) -> int:
        return sum(size[s] for s in shas)

    group = sorted(by_service)
    taken: set[str] = set()
    taken_packages: set[str] = set()
    levels: list[SharedLevel] = []
    while group:
        common = set.intersection(*(set(by_service[s]) for s in group)) - taken
        common_packages = set.intersection(*(set(packages.get(s, ())) for s in group)) - taken_packages
        if common or common_packages or not levels:
            files = tuple(sorted((by_service[group[0]][sha] for sha in common), key=lambda f: f.name))
            levels.append(SharedLevel(tuple(group), files, tuple(sorted(common_packages))))
            taken |= common
            taken_packages |= common_packages
        if len(group) <= 2:
            break  # a pair's next group is one service: what is left is its own
        gain = {out: weight(set.intersection(*(set(by_service[s]) for s in group if s != out)) - taken) for out in group}
        best = max(gain.values())
        if best == 0:
            break
        group = [s for s in group if s != min(o for o in group if gain[o] == best)]
    return tuple(levels)


def requirements_text(files: list[LockedFile] | tuple[LockedFile, ...]) -> str:
    lines = [f"{f.name}=={f.version}" for f in sorted(files, key=lambda f: f.name)]
    return "# generated by openstack-patches: exact pins, installed with --no-deps from hash-checked files\n" + \
        "".join(f"{line}\n" for line in lines)
