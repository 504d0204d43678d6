"""The upstream unit-test environment of a series: what upstream's ``tox.ini`` installs, and the nox session that installs it.

Owns reading ``[testenv]`` of a tree's ``tox.ini`` (requirement files, literal
deps, the extras it names, such as keystone's ``.[ldap]``), the extras'
requirements from the tree's metadata, and the spec the nox session
``upstream-tests`` installs from (dependencies under the release's effective
constraints, the tree editable with ``PBR_VERSION`` for that one install).
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import (
    ConfigError,
    PipelineError,
)
from pipeline.patches.series import all_series

SPEC_ENV = "OPENSTACK_PATCHES_TESTAPPLY_SPEC"


NOX_SESSION = "upstream-tests"


@dataclass(frozen=True)
class SessionSpec:
    """What the nox session of one (release, component) installs."""

    release: str
    component: str
    tree: str
    constraints: str
    requirement_files: tuple[str, ...]
    requirements: tuple[str, ...]  # literal deps of tox.ini and the requirements of the extras it asks for
    extras: tuple[str, ...]  # the tree's extras (``.[ldap]`` in tox.ini)
    version: str  # PBR_VERSION for the tree's own install, and only that install

    @property
    def editable(self) -> str:
        return f"{self.tree}[{','.join(self.extras)}]" if self.extras else self.tree


def nox_session_name(release: str, component: str) -> str:
    return f"{NOX_SESSION}(release='{release}', component='{component}')"


def nox_matrix() -> list[tuple[str, str]]:
    """(release, component) pairs for the nox parametrisation: the spec testapply wrote, else every series."""
    spec = os.environ.get(SPEC_ENV)
    if spec:
        data = json.loads(Path(spec).read_text())
        return [(data["release"], data["component"])]
    try:
        from pipeline.core.releases import load_project
        from pipeline.core.settings import Settings

        return all_series(load_project(Settings.from_mapping({})))
    except PipelineError:
        return []


def session_spec(release: str, component: str) -> SessionSpec:
    spec = os.environ.get(SPEC_ENV)
    if not spec:
        raise SystemExit("this session is driven by `invoke testapply`, which writes its spec file")
    data = json.loads(Path(spec).read_text())
    if (data["release"], data["component"]) != (release, component):
        raise SystemExit(f"the spec {spec} is for {data['component']}/{data['release']}")
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}  # JSON values
    return SessionSpec(**fields)


@dataclass(frozen=True)
class ToxEnv:
    files: tuple[str, ...]
    literal: tuple[str, ...]
    extras: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def tox_test_env(tree: Path) -> ToxEnv:
    """Requirement files, literal requirements, the tree's extras and environment of upstream's ``[testenv]``.

    Constraints lines are dropped: the release's effective constraints apply.
    Without a tox.ini, requirements.txt and test-requirements.txt are used.
    """
    tox_ini = tree / "tox.ini"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(tox_ini)
    except configparser.Error as exc:
        raise ConfigError(f"{tox_ini}: cannot be parsed: {exc}") from None
    if not parser.has_option("testenv", "deps"):
        return ToxEnv(tuple(name for name in ("requirements.txt", "test-requirements.txt") if (tree / name).exists()),
                      (), (), ())
    files: list[str] = []
    literal: list[str] = []
    extras: list[str] = []
    for line in parser.get("testenv", "deps").splitlines():
        line = _requirement(line)
        if not line or line.startswith("-c"):
            continue
        if m := re.match(r"^-r\s*\{toxinidir\}/(.+)$", line):
            if (tree / m.group(1)).exists():
                files.append(m.group(1))
        elif m := re.match(r"^(?:\.|\{toxinidir\})(?:\[([^\]]*)\])?$", line):
            extras += [e.strip() for e in (m.group(1) or "").split(",") if e.strip()]
        elif "{" not in line and not line.startswith("-"):
            literal.append(line)
    if parser.has_option("testenv", "extras"):
        extras += [e.strip() for e in re.split(r"[\s,]+", parser.get("testenv", "extras")) if e.strip()]
    env = {}
    if parser.has_option("testenv", "setenv"):
        for line in parser.get("testenv", "setenv").splitlines():
            key, sep, value = line.strip().partition("=")
            value = re.sub(r"\{env:[^:}]+:([^}]*)\}", r"\1", value.strip())
            if sep and key.strip() and "{" not in value:
                env[key.strip()] = value
    return ToxEnv(tuple(files), tuple(literal), tuple(dict.fromkeys(extras)), tuple(sorted(env.items())))


def _requirement(line: str) -> str:
    """A requirement line without its comment (``python-ldap>=3.0.0 # PSF``)."""
    return line.split(" #", 1)[0].split("\t#", 1)[0].strip() if not line.strip().startswith("#") else ""


def extras_requirements(tree: Path, extras: tuple[str, ...]) -> list[str]:
    """Requirements of the tree's extras: pbr's ``setup.cfg [extras]`` or PEP 621 optional dependencies."""
    found: list[str] = []
    setup_cfg = tree / "setup.cfg"
    if setup_cfg.exists():
        parser = configparser.ConfigParser(interpolation=None)
        with contextlib.suppress(configparser.Error):
            parser.read(setup_cfg)
        for extra in extras:
            for section in ("extras", "options.extras_require"):
                if parser.has_option(section, extra):
                    found += [_requirement(r) for r in parser.get(section, extra).splitlines() if _requirement(r)]
    pyproject = tree / "pyproject.toml"
    if pyproject.exists():
        try:
            optional = tomllib.loads(pyproject.read_text()).get("project", {}).get("optional-dependencies", {})
        except tomllib.TOMLDecodeError:
            optional = {}
        for extra in extras:
            found += [_requirement(r) for r in optional.get(extra, []) if _requirement(r)]
    return found
