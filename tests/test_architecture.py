"""The package layout draws the pipeline: each part imports only what its docstring allows, and stays small.

Each subpackage's ``__init__`` docstring (and each top-level module's) ends
with ``May import: a, b.`` naming the parts of ``pipeline`` it may import;
this test reads every module's imports (``ast``, no import side effects) and
holds each part to its line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "pipeline"
MAY_IMPORT = re.compile(r"^May import: (.+?)\.?$", re.M)
MAX_LINES = 400


def part_of(path: Path) -> str:
    """The part of pipeline a module belongs to: its subpackage, or the top-level module itself."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def allowed() -> dict[str, set[str]]:
    rules = {}
    for path in [*PACKAGE.glob("*/__init__.py"), *(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py")]:
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        found = MAY_IMPORT.search(docstring)
        assert found, f"{path.relative_to(REPO_ROOT)}: its docstring does not say what it may import"
        text = found.group(1).strip()
        rules[part_of(path) if path.name != "__init__.py" else path.parent.name] = \
            set() if text.startswith("nothing") else {t.strip() for t in text.split(",")}
    return rules


def imports_of(path: Path) -> set[str]:
    """The parts of pipeline a module imports (at any depth: deferred imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline") and not node.level:
            parts = node.module.split(".")
            names = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
            found.update(n for n in names if n != "__version__")
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("pipeline."))
    assert not [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.level], \
        f"{path}: relative import (the layout reads better with absolute ones)"
    return found


def test_each_part_imports_only_what_it_may():
    rules = allowed()
    assert set(rules) >= {"core", "sources", "patches", "constraints", "image", "provenance", "testing", "build", "ci"}
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        for used in sorted(imports_of(path) - {part}):
            if used not in rules[part]:
                wrong.append(f"{path.relative_to(REPO_ROOT)} ({part}) imports {used}")
    assert wrong == []


def test_the_order_has_no_cycle():
    rules = allowed()
    seen: dict[str, int] = {}

    def depth(part: str, path: tuple[str, ...] = ()) -> int:
        assert part not in path, f"cycle: {' -> '.join((*path, part))}"
        if part not in seen:
            seen[part] = 1 + max((depth(p, (*path, part)) for p in rules[part]), default=0)
        return seen[part]

    assert all(depth(part) for part in rules)
    assert seen["core"] == 1


def test_no_module_is_too_long():
    long = [f"{p.relative_to(REPO_ROOT)}: {n} lines" for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert long == []


def test_every_module_says_what_it_owns():
    missing = [str(p.relative_to(REPO_ROOT)) for p in sorted(PACKAGE.rglob("*.py"))
               if not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []
