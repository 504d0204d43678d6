"""What a smoke deploys: each service as ``deploy/<service>/`` describes it, with its configuration rendered.

Owns reading ``deploy/<service>/deploy.yaml`` (the services it needs, its
databases, its configuration files, the volumes its processes share, what
runs once before they start, its catalog entries, its client plugin, how
each process runs beside the command its image names, and the checks it
declares, validated) and rendering the
configuration templates of that folder: ``@name@`` and ``@name:arg@`` are
filled in from the run's values (URLs, generated passwords).  Lookup, first
match wins: ``deploy/<release>/<service>/<file>``, ``deploy/<service>/<file>``,
so a release carries only what differs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeline.core import yamlfile
from pipeline.core.errors import ConfigError
from pipeline.core.releases import Project

VARIABLE = re.compile(r"@([a-z_]+)(?::([A-Za-z0-9_.-]+))?@")
DEPLOY_KEYS = {"requires", "databases", "configs", "volumes", "bootstrap", "catalog", "client", "processes", "checks",
               "files"}
PROCESS_KEYS = {"user", "tmpfs", "privileged", "environment"}


@dataclass(frozen=True)
class CatalogEntry:
    type: str
    name: str
    url: str


CHECK_KEYS = {"name", "openstack", "run", "in", "expect", "until", "fail_if", "capture", "timeout"}
WAIT = 120.0


@dataclass(frozen=True)
class Declared:
    """One check of a deploy.yaml, as written (the ``where`` names its file and line)."""

    name: str
    where: str
    openstack: str = ""
    run: str = ""
    container: str = ""  # a process of the service for ``run`` (default: the client)
    expect: tuple[Mapping[str, Any], ...] = ()
    until: tuple[Mapping[str, Any], ...] = ()
    fail_if: tuple[Mapping[str, Any], ...] = ()
    capture: Mapping[str, str] = field(default_factory=dict)
    timeout: float = WAIT

    @property
    def parsed(self) -> bool:
        """Whether the output is read (JSON) rather than only the exit code."""
        return bool(self.expect or self.until or self.fail_if or self.capture)


def _patterns(value: Any, located: yamlfile.Located, *keys: str) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item:
            where = located.where(*keys, str(index)) if isinstance(value, list) else located.where(*keys)
            raise ConfigError(f"{where}: {keys[-1]} is a mapping of fields to values (or a list of them)",
                              hint="e.g. expect: {status: ACTIVE}")
    return tuple({str(k): v for k, v in item.items()} for item in items)


def parse_checks(value: Any, located: yamlfile.Located) -> tuple[Declared, ...]:
    """The ``checks:`` list of a deploy.yaml, validated (unknown keys, a check with neither command)."""
    checks = []
    for index, raw in enumerate(yamlfile.expect_list(value, located, "checks")):
        keys = ("checks", str(index))
        spec = yamlfile.expect_mapping(raw, located, *keys)
        where = located.where(*keys)
        unknown = sorted(set(map(str, spec)) - CHECK_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}", hint=f"allowed: {', '.join(sorted(CHECK_KEYS))}")
        if ("openstack" in spec) == ("run" in spec):
            raise ConfigError(f"{where}: a check has either openstack (its arguments) or run (a shell command)")
        if "in" in spec and "run" not in spec:
            raise ConfigError(f"{where}: in (a process's container) goes with run, not openstack")
        name = yamlfile.expect_str(spec.get("name"), located, *keys, "name") if "name" in spec else \
            str(spec.get("openstack") or spec.get("run")).split("\n")[0][:60]
        timeout = spec.get("timeout", WAIT)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"{located.where(*keys, 'timeout')}: timeout is a number of seconds")
        capture = yamlfile.expect_mapping(spec.get("capture"), located, *keys, "capture")
        checks.append(Declared(
            name=name, where=where,
            openstack=yamlfile.expect_str(spec["openstack"], located, *keys, "openstack") if "openstack" in spec else "",
            run=yamlfile.expect_str(spec["run"], located, *keys, "run") if "run" in spec else "",
            container=yamlfile.expect_str(spec["in"], located, *keys, "in") if "in" in spec else "",
            expect=_patterns(spec.get("expect"), located, *keys, "expect"),
            until=_patterns(spec.get("until"), located, *keys, "until"),
            fail_if=_patterns(spec.get("fail_if"), located, *keys, "fail_if"),
            capture={str(k): str(v) for k, v in capture.items()},
            timeout=float(timeout)))
    return tuple(checks)


@dataclass(frozen=True)
class ProcessOptions:
    """How the smoke runs one process beside its image's command (a deployment's choices)."""

    user: str | None = None
    tmpfs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    privileged: bool = False
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Deployment:
    service: str
    folder: Path  # where deploy.yaml was found
    requires: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    configs: tuple[str, ...] = ()  # relative to /etc/<service>/ and to the deploy folder
    volumes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # path -> volume name
    bootstrap: tuple[str, ...] = ()  # shell commands, once, as root, before the processes start
    catalog: tuple[CatalogEntry, ...] = ()
    client: tuple[str, ...] = ()  # distributions of its python-openstackclient plugin
    processes: Mapping[str, ProcessOptions] = field(default_factory=lambda: MappingProxyType({}))
    checks: tuple[Declared, ...] = ()  # declared checks, run (declared.py) after the service's own Python ones
    files: tuple[str, ...] = ()  # deploy-folder files the checks use, copied into the client container

    def options(self, process: str) -> ProcessOptions:
        return self.processes.get(process) or ProcessOptions()


def deploy_file(project: Project, release: str, service: str, name: str) -> Path:
    """The deploy file ``name`` of a service: the release's own, else the common one."""
    root = project.settings.root / "deploy"
    for candidate in (root / release / service / name, root / service / name):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no {name} for {service} ({release}) under {root}",
                      hint=f"add deploy/{service}/{name} (or deploy/{release}/{service}/{name})")


def _list(value: Any, located: yamlfile.Located, key: str) -> tuple[str, ...]:
    return tuple(yamlfile.expect_str(v, located, key, str(i)) for i, v in enumerate(yamlfile.expect_list(value, located, key)))


def load_deployment(project: Project, release: str, service: str) -> Deployment:
    path = deploy_file(project, release, service, "deploy.yaml")
    data, located = yamlfile.load(path)
    data = yamlfile.expect_mapping(data, located)
    unknown = sorted(set(map(str, data)) - DEPLOY_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}", hint=f"allowed: {', '.join(sorted(DEPLOY_KEYS))}")
    catalog = []
    for index, entry in enumerate(data.get("catalog") or []):
        entry = yamlfile.expect_mapping(entry, located, "catalog", str(index))
        if set(entry) != {"type", "name", "url"}:
            raise ConfigError(f"{located.where('catalog', str(index))}: a catalog entry has type, name and url")
        catalog.append(CatalogEntry(*(yamlfile.expect_str(entry[k], located, "catalog", str(index), k)
                                      for k in ("type", "name", "url"))))
    processes = {}
    for name, raw in yamlfile.expect_mapping(data.get("processes"), located, "processes").items():
        options = yamlfile.expect_mapping(raw, located, "processes", str(name))
        bad = sorted(set(options) - PROCESS_KEYS)
        if bad:
            raise ConfigError(f"{located.where('processes', str(name))}: unknown key(s) {', '.join(bad)}",
                              hint=f"allowed: {', '.join(sorted(PROCESS_KEYS))}")
        processes[str(name)] = ProcessOptions(
            user=options.get("user"),
            tmpfs=MappingProxyType({str(k): str(v) for k, v in yamlfile.expect_mapping(options.get("tmpfs"), located, "processes",
                                                                        str(name), "tmpfs").items()}),
            privileged=bool(options.get("privileged", False)),
            environment=MappingProxyType({str(k): str(v) for k, v in yamlfile.expect_mapping(options.get("environment"), located,
                                                                              "processes", str(name), "environment").items()}),
        )
    return Deployment(
        service=service, folder=path.parent,
        requires=_list(data.get("requires"), located, "requires"),
        databases=_list(data.get("databases"), located, "databases"),
        configs=_list(data.get("configs"), located, "configs"),
        volumes=MappingProxyType({str(k): str(v) for k, v in yamlfile.expect_mapping(data.get("volumes"), located, "volumes").items()}),
        bootstrap=_list(data.get("bootstrap"), located, "bootstrap"),
        catalog=tuple(catalog),
        client=_list(data.get("client"), located, "client"),
        processes=MappingProxyType(processes),
        checks=parse_checks(data.get("checks"), located),
        files=_list(data.get("files"), located, "files"),
    )


def with_requirements(project: Project, release: str, services: list[str]) -> list[Deployment]:
    """The deployments of ``services`` and of every service they need, each after what it needs."""
    known = set(project.release(release).services)
    ordered: dict[str, Deployment] = {}

    def visit(service: str, path: tuple[str, ...]) -> None:
        if service in ordered:
            return
        if service in path:
            raise ConfigError(f"deploy/{service}/deploy.yaml: requires form a cycle: {' -> '.join((*path, service))}")
        if service not in known:
            raise ConfigError(f"{' -> '.join(path)} requires {service}, which is not a service of {release}",
                              hint=f"services of {release}: {', '.join(sorted(known))}")
        deployment = load_deployment(project, release, service)
        for needed in deployment.requires:
            visit(needed, (*path, service))
        ordered[service] = deployment

    for service in services:
        visit(service, ())
    return list(ordered.values())


Values = Mapping[str, "str | Mapping[str, str]"]


def fill(text: str, values: Values, where: str, quote: Callable[[str], str] = lambda value: value) -> str:
    """``text`` with every ``@name@`` / ``@name:arg@`` replaced by its value (passed through ``quote``); an
    unknown one is refused, naming ``where``."""
    def value_of(match: re.Match[str]) -> str:
        name, arg = match.group(1), match.group(2)
        value = values.get(name)
        if arg is not None and isinstance(value, Mapping):
            value = value.get(arg)
        if not isinstance(value, str):
            known = ", ".join(sorted(f"@{k}:...@" if isinstance(v, Mapping) else f"@{k}@" for k, v in values.items()))
            raise ConfigError(f"{where}: unknown template value {match.group(0)}", hint=f"known: {known}")
        return quote(value)

    return VARIABLE.sub(value_of, text)


def render(path: Path, values: Values) -> str:
    """The template at ``path`` filled in, line by line (a message names the line)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(fill(line, values, f"{path}:{number}") for number, line in enumerate(lines, 1))
