"""Which tests a patch can break: test modules that import what it changes, through the import graph.

The graph of a tree's packages comes from grimp (static parsing, no import
of the code, cached per file), rebuilt after each patch because a patch may
add imports.  OpenStack loads drivers and plugins through entry points
(stevedore), which no import shows: when no test module reaches a changed
module through imports, a module named by an entry point of group G counts
as imported by every module that spells G (or a prefix of it, as in
``f'keystone.auth.{method}'``) in a string.  (Only as a fallback: the loaders
are imported by nearly every test, so always following them would select
the whole suite.)  A patch selects every test module that imports, directly or
through other modules of the package, any module it changes, plus the test
modules it changes itself.  A change to a non-Python file inside a package
(a policy file, a migration template, a JSON schema) selects that package's
whole test suite: what reads such a file cannot be seen in imports.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

GRAPH_SCRIPT = r"""
import json, sys
import grimp
graph = grimp.build_graph(*sys.argv[2:], cache_dir=sys.argv[1])
json.dump({m: sorted(graph.find_modules_that_directly_import(m)) for m in graph.modules}, sys.stdout)
"""
NOT_PACKAGES = {"doc", "docs", "releasenotes", "tools", "playbooks", "devstack", "api-ref", "etc", "rally-jobs"}


def is_test_module(module: str) -> bool:
    parts = module.split(".")
    return "tests" in parts[:-1] and parts[-1].startswith("test_")


def top_packages(tree: Path) -> list[str]:
    """The importable top-level packages of a source tree (``oslo_messaging``, ``keystone``)."""
    return sorted(p.name for p in tree.iterdir()
                  if p.is_dir() and (p / "__init__.py").exists() and p.name not in NOT_PACKAGES
                  and not p.name.startswith("."))


def module_of(path: str, packages: list[str]) -> str | None:
    pure = PurePosixPath(path)
    if pure.suffix != ".py" or not pure.parts or pure.parts[0] not in packages:
        return None
    parts = list(pure.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


LITERAL_RE = re.compile(r"""[\'"]([A-Za-z_]\w*(?:\.\w+)*\.?)(?=[\'"{%])""")
ENTRY_RE = re.compile(r"^\s*[^=#\s][^=]*=\s*([\w.]+)\s*(?::[\w.]+)?\s*(?:\[.*\])?\s*$")


def entry_points(tree: Path) -> dict[str, set[str]]:
    """Entry-point group -> modules it names, from pbr's ``setup.cfg`` and PEP 621 ``pyproject.toml``."""
    groups: dict[str, set[str]] = {}
    setup_cfg = tree / "setup.cfg"
    if setup_cfg.exists():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(setup_cfg)
            readable = True
        except configparser.Error:
            readable = False
        if readable and parser.has_section("entry_points"):
            for group, value in parser.items("entry_points"):
                groups.setdefault(group, set()).update(m.group(1) for line in value.splitlines() if (m := ENTRY_RE.match(line)))
    pyproject = tree / "pyproject.toml"
    if pyproject.exists():
        try:
            tables = tomllib.loads(pyproject.read_text()).get("project", {}).get("entry-points", {})
        except tomllib.TOMLDecodeError:
            tables = {}
        for group, entries in tables.items():
            groups.setdefault(group, set()).update(str(v).split(":")[0].strip() for v in entries.values())
    return groups


def entry_point_loaders(tree: Path, packages: list[str], modules: set[str]) -> dict[str, set[str]]:
    """Plugin module -> the modules that load its entry-point group by name."""
    groups = {g: {m for m in targets if m in modules} for g, targets in entry_points(tree).items()}
    groups = {g: targets for g, targets in groups.items() if targets}
    if not groups:
        return {}
    edges: dict[str, set[str]] = {}
    for module in modules:
        path = tree / Path(*module.split("."))
        source = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        try:
            literals = set(LITERAL_RE.findall(source.read_text(errors="replace")))
        except OSError:
            continue
        for group, targets in groups.items():
            if any(lit == group or (lit.endswith(".") and group.startswith(lit) and lit.count(".") > 1) for lit in literals):
                for target in targets:
                    if target != module:
                        edges.setdefault(target, set()).add(module)
    return edges


def selector_regex(modules: list[str]) -> str:
    return "^(" + "|".join(re.escape(m) for m in sorted(modules)) + r")\."


@dataclass
class ImportGraph:
    tree: Path
    packages: list[str]
    cache: Path
    importers: dict[str, list[str]] = field(default_factory=dict)
    loaders: dict[str, set[str]] = field(default_factory=dict)  # plugin module -> modules loading its group

    @classmethod
    def of(cls, tree: Path) -> ImportGraph:
        return cls(tree, top_packages(tree), tree.parent / "import-graph-cache")

    def refresh(self) -> None:
        if not self.packages:
            self.importers = {}
            return
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        proc = subprocess.run([sys.executable, "-c", GRAPH_SCRIPT, str(self.cache), *self.packages], cwd=self.tree,
                              env=env, capture_output=True, text=True)
        self.importers = json.loads(proc.stdout) if proc.returncode == 0 else {}
        self.loaders = entry_point_loaders(self.tree, self.packages, set(self.importers))

    def upstream(self, module: str, plugins: bool = False) -> set[str]:
        """Every module that imports ``module`` directly or through others (or loads it as a plugin)."""
        seen: set[str] = set()
        stack = [module]
        while stack:
            current = stack.pop()
            for importer in [*self.importers.get(current, []), *(self.loaders.get(current, ()) if plugins else ())]:
                if importer not in seen:
                    seen.add(importer)
                    stack.append(importer)
        return seen

    def impacted(self, changed: list[str]) -> list[str]:
        """Test modules a patch changing ``changed`` (paths) can break; [] when nothing Python is reached."""
        self.refresh()
        if not self.importers:
            return []
        tests = {m for m in self.importers if is_test_module(m)}
        selected: set[str] = set()
        for path in changed:
            module = module_of(path, self.packages)
            top = PurePosixPath(path).parts[0] if PurePosixPath(path).parts else ""
            if module is None:
                if top in self.packages and PurePosixPath(path).suffix != ".py":
                    selected |= {t for t in tests if t.split(".")[0] == top}
                continue
            if module in tests:
                selected.add(module)
            # A package's __init__ runs whenever a module below it is imported.
            below = {m for m in self.importers if m.startswith(module + ".")} if path.endswith("__init__.py") else set()
            for target in {module, *below}:
                reached = {m for m in self.upstream(target) if m in tests}
                selected |= reached or {m for m in self.upstream(target, plugins=True) if m in tests}
        return sorted(selected)
