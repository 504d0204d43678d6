"""Releases: ``releases/<R>/`` (source refs, release.yaml, runtime.yaml) and the project they make up.

``load_project`` reads every release of the repository once, validated, into
frozen ``Release`` objects; ``Project`` is the pipeline's whole input (the
settings and the releases) and answers for components and services.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from pipeline.core import yamlfile
from pipeline.core.errors import (
    ConfigError,
    UnknownComponentError,
    UnknownReleaseError,
    ValueTypeError,
)
from pipeline.core.layout import Layout
from pipeline.core.redact import public_url, register_url
from pipeline.core.runtime import EMPTY as NO_RUNTIME
from pipeline.core.runtime import RuntimeDeclaration, load_runtime
from pipeline.core.settings import Network, Settings, _frozen

RELEASE_NAME = re.compile(r"^\d{4}\.\d$")
BOOTSTRAP_MODES = ("pull", "debootstrap", "auto")

@dataclass(frozen=True)
class BaseImageSettings:
    """How a release's base images are made."""

    image: str = "debian:bookworm-slim"
    debian_suite: str = "bookworm"
    debian_mirror: str = "http://deb.debian.org/debian"
    # Where a bootstrapped root filesystem gets Debian's security updates (the <suite>-security suite).
    debian_security_mirror: str = "http://deb.debian.org/debian-security"
    bootstrap: str = "auto"  # pull | debootstrap | auto


@dataclass(frozen=True)
class Component:
    """One upstream repository as configured for one release."""

    name: str
    release: str
    ref: str
    url: str  # may hold credentials: for git only
    pypi_name: str
    is_service: bool

    @property
    def public_url(self) -> str:
        return public_url(self.url)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.release})"


@dataclass(frozen=True)
class Release:
    """``releases/<name>/``: source refs, services and release-wide settings."""

    name: str
    directory: Path
    refs: Mapping[str, str]
    services: tuple[str, ...]
    python: str
    base: BaseImageSettings
    constraints_url: str | None
    service_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _frozen({}))
    release_date: datetime.date | None = None
    end_of_life: datetime.date | None = None
    status: str = ""  # "" | maintained | unmaintained | end-of-life
    runtime: RuntimeDeclaration = NO_RUNTIME  # runtime.yaml: what the images carry to run

    @property
    def libraries(self) -> tuple[str, ...]:
        return tuple(name for name in self.refs if name not in self.services)


RELEASE_KEYS = {"services", "python", "base", "constraints_url", "service_defaults", "release_date", "end_of_life",
                "status"}
RELEASE_STATUSES = ("", "maintained", "unmaintained", "end-of-life")


def _load_refs(path: Path) -> dict[str, str]:
    data, located = yamlfile.load(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a flat map of component name to git ref")
    refs: dict[str, str] = {}
    for component, ref in data.items():
        text = yamlfile.expect_str(ref, located, str(component), example='"32.2.0"').strip()
        if not text:
            raise ValueTypeError(f"{located.where(str(component))}: the ref of {component} is empty")
        refs[str(component)] = text
    return refs


def _date(value: Any, located: yamlfile.Located, key: str) -> datetime.date | None:
    if value is None:
        return None
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueTypeError(f"{located.where(key)}: {key} must be a date like 2025-10-01, not {value!r}")


def load_release(directory: Path) -> Release:
    name = directory.name
    refs = _load_refs(directory / "source-refs.yaml")
    release_file = directory / "release.yaml"
    data, located = yamlfile.load(release_file) if release_file.exists() else ({}, yamlfile.Located(release_file))
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{release_file}: must be a mapping")
    unknown = sorted(set(data) - RELEASE_KEYS)
    if unknown:
        raise ConfigError(f"{release_file}: unknown key(s) {', '.join(unknown)}",
                          hint=f"allowed keys: {', '.join(sorted(RELEASE_KEYS))}")
    services = data.get("services", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise ValueTypeError(f"{located.where('services')}: services must be a list of component names")
    missing = [s for s in services if s not in refs]
    if missing:
        raise ConfigError(
            f"{located.where('services')}: service(s) {', '.join(missing)} have no ref in {directory / 'source-refs.yaml'}",
            hint="add a ref (branch, tag or commit SHA) for each service",
        )
    base_raw = data.get("base") or {}
    if not isinstance(base_raw, dict):
        raise ValueTypeError(f"{located.where('base')}: base must be a mapping")
    base_fields = set(BaseImageSettings.__dataclass_fields__)
    bad = sorted(set(base_raw) - base_fields)
    if bad:
        raise ConfigError(f"{located.where('base')}: unknown base key(s) {', '.join(bad)}",
                          hint=f"allowed: {', '.join(sorted(base_fields))}")
    base = BaseImageSettings(**{k: yamlfile.expect_str(v, located, "base", k) for k, v in base_raw.items()})
    if base.bootstrap not in BOOTSTRAP_MODES:
        raise ConfigError(f"{located.where('base', 'bootstrap')}: base.bootstrap must be pull, debootstrap or auto")
    defaults = data.get("service_defaults") or {}
    if not isinstance(defaults, dict) or not all(isinstance(v, dict) for v in defaults.values()):
        raise ValueTypeError(f"{located.where('service_defaults')}: service_defaults must map a service to a mapping")
    for service, settings in defaults.items():
        if service not in services:
            raise ConfigError(f"{located.where('service_defaults', service)}: service_defaults names {service!r}, "
                              "which is not in services")
        for key, value in settings.items():
            if not isinstance(value, (str, int, float, bool)) or not re.fullmatch(r"[a-z][a-z0-9_.-]*", str(key)):
                raise ValueTypeError(
                    f"{located.where('service_defaults', service, str(key))}: service_defaults.{service}.{key} "
                    "must be a lower-case key with a scalar value",
                    hint="they become image labels io.openstack-patches.default.<key>=<value>",
                )
    python = yamlfile.expect_str(data.get("python", "3.11"), located, "python", example='"3.11"')
    if not re.fullmatch(r"3\.\d+", python):
        raise ValueTypeError(f"{located.where('python')}: python must look like \"3.11\", got {python!r}")
    constraints_url = data.get("constraints_url")
    if constraints_url is not None:
        constraints_url = yamlfile.expect_str(constraints_url, located, "constraints_url")
        register_url(constraints_url)
    status = data.get("status", "")
    if status not in RELEASE_STATUSES:
        raise ConfigError(f"{located.where('status')}: status must be one of {', '.join(s for s in RELEASE_STATUSES if s)}")
    return Release(
        name=name,
        directory=directory,
        refs=_frozen(refs),
        services=tuple(services),
        python=python,
        base=base,
        constraints_url=constraints_url,
        service_defaults=_frozen({k: _frozen(v) for k, v in defaults.items()}),
        release_date=_date(data.get("release_date"), located, "release_date"),
        end_of_life=_date(data.get("end_of_life"), located, "end_of_life"),
        status=status,
        runtime=load_runtime(directory, tuple(services), defaults),
    )


@dataclass(frozen=True)
class Project:
    """All releases of the repository plus the settings: the pipeline's whole input."""

    settings: Settings
    releases: Mapping[str, Release]

    @property
    def layout(self) -> Layout:
        return self.settings.layout

    @property
    def network(self) -> Network:
        return self.settings.network

    def release(self, name: str) -> Release:
        try:
            return self.releases[name]
        except KeyError:
            raise UnknownReleaseError(
                f"unknown release {name!r}",
                hint=f"known releases: {', '.join(self.releases) or 'none'} (directories under {self.settings.root / 'releases'})",
            ) from None

    def services(self, release: str, names: list[str] | tuple[str, ...]) -> Release:
        """The release, after checking that each of ``names`` is one of its services."""
        rel = self.release(release)
        for name in names:
            if name not in rel.services:
                raise UnknownComponentError(
                    f"{name!r} is not a service of release {rel.name}",
                    hint=f"services of {rel.name}: {', '.join(rel.services)} (releases/{rel.name}/release.yaml)",
                )
        return rel

    def component(self, release: str, name: str) -> Component:
        rel = self.release(release)
        if name not in rel.refs:
            raise UnknownComponentError(
                f"unknown component {name!r} for release {release}",
                hint=f"components of {release}: {', '.join(rel.refs)}; add a ref to {rel.directory / 'source-refs.yaml'}",
            )
        return Component(name=name, release=release, ref=rel.refs[name], url=self.settings.git_url(name),
                         pypi_name=self.settings.pypi_name(name), is_service=name in rel.services)

    def components(self, release: str, names: list[str] | tuple[str, ...] = ()) -> list[Component]:
        """The named components of a release, or all of them, in source-refs order."""
        rel = self.release(release)
        return [self.component(release, n) for n in (names or rel.refs)]

    def built_from_source(self, release: str) -> dict[str, str]:
        """Canonical PyPI name to component, for everything installed from patched source."""
        return {canonicalize_name(self.settings.pypi_name(c)): c for c in self.release(release).refs}


def load_project(settings: Settings) -> Project:
    releases_dir = settings.root / "releases"
    releases: dict[str, Release] = {}
    if releases_dir.is_dir():
        for directory in sorted(p for p in releases_dir.iterdir() if p.is_dir()):
            if not RELEASE_NAME.match(directory.name):
                raise ConfigError(f"{directory}: release directories are named like 2025.2",
                                  hint="rename or remove the directory")
            releases[directory.name] = load_release(directory)
    return Project(settings=settings, releases=_frozen(releases))
