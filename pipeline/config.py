"""Configuration: settings from invoke.yaml and the per-release files, loaded and validated once.

Everything downstream receives these frozen dataclasses; nothing else reads
YAML or the ``pipeline:`` settings block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from packaging.utils import canonicalize_name

from .errors import ConfigError, UnknownComponentError, UnknownReleaseError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCE_MODES = ("git", "sdist", "auto")
RELEASE_NAME = re.compile(r"^\d{4}\.\d$")

DEFAULT_SETTINGS: dict[str, Any] = {
    "root": ".",
    "workdir": "build",
    "cache_dir": "~/.cache/openstack-patches",
    "git_base": "https://opendev.org/openstack",
    "repos": {},
    "source_mode": "auto",
    "index_url": "https://pypi.org/simple",
    "constraints_url": "https://releases.openstack.org/constraints/upper/{release}",
    "pypi_names": {"placement": "openstack-placement"},
    "ca_bundle": "",
    "offline": False,
    "image_prefix": "openstack-patches",
    "registry": "",
    "test_commands": {},
}


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Settings:
    """The ``pipeline:`` block of invoke.yaml, with paths resolved."""

    root: Path
    workdir: Path
    cache_dir: Path
    git_base: str
    repos: Mapping[str, str]
    source_mode: str
    index_url: str
    constraints_url: str
    pypi_names: Mapping[str, str]
    ca_bundle: Path | None = None
    offline: bool = False
    image_prefix: str = "openstack-patches"
    registry: str = ""
    test_commands: Mapping[str, str] = field(default_factory=lambda: _frozen({}))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], root: Path = PROJECT_ROOT) -> Settings:
        """Validate the raw block; relative paths are taken from ``root`` (the tasks.py folder)."""
        unknown = sorted(set(raw) - set(DEFAULT_SETTINGS))
        if unknown:
            raise ConfigError(
                f"invoke.yaml: unknown pipeline setting(s): {', '.join(unknown)}",
                hint=f"known settings: {', '.join(DEFAULT_SETTINGS)}",
            )
        values = {**DEFAULT_SETTINGS, **{k: v for k, v in raw.items() if v is not None}}
        for key in ("repos", "pypi_names", "test_commands"):
            if not isinstance(values[key], Mapping):
                raise ConfigError(f"invoke.yaml: pipeline.{key} must be a mapping of component to string")
        if values["source_mode"] not in SOURCE_MODES:
            raise ConfigError(
                f"invoke.yaml: pipeline.source_mode is {values['source_mode']!r}",
                hint=f"use one of {', '.join(SOURCE_MODES)}",
            )

        def path(value: str, base: Path) -> Path:
            candidate = Path(str(value)).expanduser()
            return candidate if candidate.is_absolute() else (base / candidate).resolve()

        root = path(values["root"], root)

        offline = values["offline"]
        if isinstance(offline, str):
            offline = offline.lower() in ("1", "true", "yes", "on")
        return cls(
            root=root,
            workdir=path(values["workdir"], root),
            cache_dir=path(values["cache_dir"], root),
            git_base=str(values["git_base"]).rstrip("/"),
            repos=_frozen({str(k): str(v) for k, v in values["repos"].items()}),
            source_mode=values["source_mode"],
            index_url=str(values["index_url"]).rstrip("/"),
            constraints_url=str(values["constraints_url"]),
            pypi_names=_frozen({str(k): str(v) for k, v in values["pypi_names"].items()}),
            ca_bundle=path(values["ca_bundle"], root) if values["ca_bundle"] else None,
            offline=bool(offline),
            image_prefix=str(values["image_prefix"]).strip("/"),
            registry=str(values["registry"]).strip("/"),
            test_commands=_frozen({str(k): str(v) for k, v in values["test_commands"].items()}),
        )

    def git_url(self, component: str) -> str:
        """Upstream URL: a per-component override, else ``{git_base}/{component}``.

        Local paths become ``file://`` URLs because git ignores ``--depth`` for
        plain paths and we rely on shallow fetches.
        """
        url = self.repos.get(component) or f"{self.git_base}/{component}"
        if "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url):
            local = Path(url).expanduser()
            url = (local if local.is_absolute() else self.root / local).resolve().as_uri()
        return url

    def pypi_name(self, component: str) -> str:
        return self.pypi_names.get(component, component)


@dataclass(frozen=True)
class BaseImageSettings:
    """How a release's base images are made (used by the images stage)."""

    image: str = "debian:bookworm-slim"
    debian_suite: str = "bookworm"
    debian_mirror: str = "http://deb.debian.org/debian"
    bootstrap: str = "auto"  # pull | debootstrap | auto


@dataclass(frozen=True)
class Component:
    """One upstream repository as configured for one release."""

    name: str
    release: str
    ref: str
    url: str
    pypi_name: str
    is_service: bool


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

    @property
    def libraries(self) -> tuple[str, ...]:
        return tuple(name for name in self.refs if name not in self.services)

    @property
    def constraints_snapshot(self) -> Path:
        return self.directory / "upper-constraints.txt"


RELEASE_KEYS = {"services", "python", "base", "constraints_url", "service_defaults"}


def read_yaml(path: Path) -> Any:
    """Parse a YAML file, turning syntax errors into a message with file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}", hint="fix the syntax and rerun") from None


def _load_refs(path: Path) -> dict[str, str]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a flat map of component name to git ref")
    refs: dict[str, str] = {}
    for component, ref in data.items():
        if not isinstance(ref, str) or not ref.strip():
            raise ConfigError(
                f"{path}: ref of {component!r} is {ref!r}, not a string",
                hint=f"quote it, e.g. {component}: \"{ref}\" (YAML reads 28.10 as the number 28.1)",
            )
        refs[str(component)] = ref.strip()
    return refs


def load_release(directory: Path) -> Release:
    name = directory.name
    refs = _load_refs(directory / "source-refs.yaml")
    release_file = directory / "release.yaml"
    data = read_yaml(release_file) if release_file.exists() else {}
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{release_file}: must be a mapping")
    unknown = sorted(set(data) - RELEASE_KEYS)
    if unknown:
        raise ConfigError(
            f"{release_file}: unknown key(s) {', '.join(unknown)}",
            hint=f"allowed keys: {', '.join(sorted(RELEASE_KEYS))}",
        )
    services = data.get("services", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise ConfigError(f"{release_file}: services must be a list of component names")
    missing = [s for s in services if s not in refs]
    if missing:
        raise ConfigError(
            f"{release_file}: service(s) {', '.join(missing)} have no ref in {directory / 'source-refs.yaml'}",
            hint="add a ref (branch, tag or commit SHA) for each service",
        )
    base_raw = data.get("base") or {}
    if not isinstance(base_raw, dict):
        raise ConfigError(f"{release_file}: base must be a mapping")
    base_fields = set(BaseImageSettings.__dataclass_fields__)
    bad = sorted(set(base_raw) - base_fields)
    if bad:
        raise ConfigError(f"{release_file}: unknown base key(s) {', '.join(bad)}", hint=f"allowed: {', '.join(sorted(base_fields))}")
    base = BaseImageSettings(**{k: str(v) for k, v in base_raw.items()})
    if base.bootstrap not in ("pull", "debootstrap", "auto"):
        raise ConfigError(f"{release_file}: base.bootstrap must be pull, debootstrap or auto")
    defaults = data.get("service_defaults") or {}
    if not isinstance(defaults, dict) or not all(isinstance(v, dict) for v in defaults.values()):
        raise ConfigError(f"{release_file}: service_defaults must map a service to a mapping of settings")
    for service, settings in defaults.items():
        if service not in services:
            raise ConfigError(f"{release_file}: service_defaults names {service!r}, which is not in services")
        for key, value in settings.items():
            if not isinstance(value, (str, int, float, bool)) or not re.fullmatch(r"[a-z][a-z0-9_.-]*", str(key)):
                raise ConfigError(
                    f"{release_file}: service_defaults.{service}.{key} must be a lower-case key with a scalar value",
                    hint="they become image labels io.openstack-patches.default.<key>=<value>",
                )
    python = str(data.get("python", "3.11"))
    if not re.fullmatch(r"3\.\d+", python):
        raise ConfigError(f"{release_file}: python must look like \"3.11\", got {python!r}")
    return Release(
        name=name,
        directory=directory,
        refs=_frozen(refs),
        services=tuple(services),
        python=python,
        base=base,
        constraints_url=data.get("constraints_url"),
        service_defaults=_frozen({k: _frozen(v) for k, v in defaults.items()}),
    )


@dataclass(frozen=True)
class Project:
    """All releases of the repository plus the settings: the pipeline's whole input."""

    settings: Settings
    releases: Mapping[str, Release]

    @property
    def patches_dir(self) -> Path:
        return self.settings.root / "patches"

    @property
    def overrides_dir(self) -> Path:
        return self.settings.root / "overrides"

    def release(self, name: str) -> Release:
        try:
            return self.releases[name]
        except KeyError:
            raise UnknownReleaseError(
                f"unknown release {name!r}",
                hint=f"known releases: {', '.join(self.releases) or 'none'} (directories under {self.settings.root / 'releases'})",
            ) from None

    def component(self, release: str, name: str) -> Component:
        rel = self.release(release)
        if name not in rel.refs:
            raise UnknownComponentError(
                f"unknown component {name!r} for release {release}",
                hint=f"components of {release}: {', '.join(rel.refs)}; add a ref to {rel.directory / 'source-refs.yaml'}",
            )
        return Component(
            name=name,
            release=release,
            ref=rel.refs[name],
            url=self.settings.git_url(name),
            pypi_name=self.settings.pypi_name(name),
            is_service=name in rel.services,
        )

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
                raise ConfigError(
                    f"{directory}: release directories are named like 2025.2",
                    hint="rename or remove the directory",
                )
            releases[directory.name] = load_release(directory)
    return Project(settings=settings, releases=_frozen(releases))
