"""Debian packages of the images: which each service gets, and the images that install them.

Owns a service's runtime packages (what ``runtime.yaml`` declares for it,
and what its own ``bindep.txt`` names for the release's bindep profiles on
the image's Debian, less what the release excludes; bindep's answer is kept
by the file's hash), and the packages images: one apt install of a list on
a parent image (a level of the release layers, or a service's own layer
above them), tagged by a hash of the parent, the list and the Dockerfile,
made once per engine.  An apt failure names the package, the file that asks
for it and the release.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from pipeline.core import console
from pipeline.core.errors import ConfigError, ImageBuildError, PackageNotFoundError
from pipeline.core.files import hash_inputs, sha256_bytes
from pipeline.core.releases import Project, Release
from pipeline.core.runtime import bindep_packages
from pipeline.core.stamps import Stamp
from pipeline.image.dockerfiles import find_dockerfile
from pipeline.image.engine import context_tar, ensure_image, stream_build
from pipeline.patches.records import PreparedTree

# apt's words for a package the suite lacks
MISSING_PACKAGE = re.compile(r"E: (?:Unable to locate package (\S+)|Package '([^']+)' has no installation candidate"
                             r"|Couldn't find any package by (?:glob|regex) '([^']+)')")


@dataclass(frozen=True)
class ServicePackages:
    """The Debian packages one service's image carries, each with where it comes from."""

    service: str
    origins: Mapping[str, str]  # package -> "releases/R/runtime.yaml:12" or "bindep.txt of nova (build/...)"
    excluded: tuple[str, ...] = ()  # what bindep.txt names that the release's exclude list drops

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.origins)


def service_packages(project: Project, rel: Release, tree: PreparedTree) -> ServicePackages:
    """What runtime.yaml declares for the service, then what its bindep.txt adds."""
    runtime = rel.runtime
    origins = {item.value: item.where for item in runtime.of(tree.component).packages}
    excluded: tuple[str, ...] = ()
    bindep = project.layout.resolve(tree.tree) / "bindep.txt"
    if runtime.services and bindep.is_file():
        kept, dropped = _bindep(project, rel, bindep)
        where = f"bindep.txt of {tree.component} ({project.layout.rel(bindep)})"
        for name in kept:
            origins.setdefault(name, where)
        excluded = tuple(dropped)
    return ServicePackages(tree.component, MappingProxyType(origins), excluded)


def _bindep(project: Project, rel: Release, path: Path) -> tuple[list[str], list[str]]:
    """bindep's answer for the file (parsing it takes bindep 0.3 s: kept by the file's hash)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    runtime = rel.runtime
    inputs = [sha256_bytes(text.encode()), rel.base.debian_suite, list(runtime.bindep_profiles), list(runtime.bindep_exclude)]
    stamp = Stamp(project.layout.cache_dir / "stamps" / "bindep" / f"{hash_inputs(inputs)[:24]}.json")
    cached = stamp.current(inputs)
    if cached:
        return list(cached["kept"]), list(cached["excluded"])
    try:
        kept, dropped = bindep_packages(text, rel.base.debian_suite, runtime.bindep_profiles, runtime.bindep_exclude)
    except ConfigError as error:
        raise ConfigError(f"{project.layout.rel(path)}: {error.message}",
                          hint=f"fix the file (a patch of the series may have broken it), or drop its packages with "
                               f"defaults.bindep.exclude in {runtime.path}") from None
    stamp.record(inputs, {"kept": kept, "excluded": dropped})
    return kept, dropped


def packages_ref(project: Project, rel: Release, parent: str, packages: list[str], name: str) -> str:
    """The tag of the packages image of ``packages`` on ``parent`` (an image ID or content-addressed tag)."""
    dockerfile = find_dockerfile(project, rel.name, ["runtime-packages"]).read_text()
    key = hash_inputs([parent, sorted(packages), dockerfile])[:16]
    return f"{project.settings.image_prefix}/packages-{rel.name}-{name}:{key}"


def ensure_packages_image(client, project: Project, rel: Release, parent: str, origins: Mapping[str, str],
                          name: str, log_path: Path) -> tuple[str, str]:
    """The image of ``parent`` plus the packages of ``origins``, made where the engine lacks it: (tag, ID)."""
    packages = sorted(origins)
    ref = packages_ref(project, rel, parent, packages, name)
    dockerfile = find_dockerfile(project, rel.name, ["runtime-packages"]).read_bytes()

    def make() -> str:
        what = f"Debian packages of {name} ({rel.name}): {len(packages)} packages"
        with console.step(what):
            return apt_build(client, context_tar({"Dockerfile": dockerfile}), log_path, what,
                             {"PARENT": parent, "PACKAGES": " ".join(packages)}, project.network.proxy_env(), rel, origins)

    image_id, _ = ensure_image(client, project.settings, ref, make, f"the Debian packages of {name} ({rel.name})")
    return ref, image_id


def apt_build(client, context, log_path: Path, what: str, buildargs: dict[str, str], proxies: dict[str, str],
              rel: Release, origins: Mapping[str, str]) -> str:
    """A build whose steps install Debian packages: a package the suite lacks is named with the file that
    asks for it."""
    try:
        return stream_build(client, context, log_path, what, buildargs=buildargs, secret_args=proxies)
    except ImageBuildError as error:
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        match = MISSING_PACKAGE.search(log) or MISSING_PACKAGE.search(error.message)
        if match is None:
            raise
        package = next(g for g in match.groups() if g)
        origin = origins.get(package, "the Dockerfile")
        raise PackageNotFoundError(
            f"{what}: Debian {rel.base.debian_suite} has no package {package!r} (asked for by {origin})",
            hint=f"fix the name there for {rel.base.debian_suite} (apt-cache search), or, if it comes from a "
                 f"bindep.txt, add it to defaults.bindep.exclude in {rel.runtime.path}; build log: {log_path}",
        ) from None
