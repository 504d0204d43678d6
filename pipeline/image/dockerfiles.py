"""Dockerfiles: the lookup that lets a release or a service carry its own, and the ``#@`` expansions.

Lookup, first match wins: ``dockerfiles/<release>/<name>.Dockerfile``,
``dockerfiles/<name>.Dockerfile`` for each name asked for in turn (e.g. the
service, then ``service``), in the project repository and then among the
tool's own files, so a release only carries the files where it differs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import ConfigError
from pipeline.core.releases import Project
from pipeline.core.settings import PROJECT_ROOT

LIBRARY_LINE = "#@library "
TOOL_FILES = PROJECT_ROOT / "dockerfiles"


def candidates(release: str, names: Iterable[str]) -> list[str]:
    """The lookup order within one ``dockerfiles/`` folder, as paths relative to it (also used by ci.matrix)."""
    return [path for name in names for path in (f"{release}/{name}.Dockerfile", f"{name}.Dockerfile")]


def find_dockerfile(project: Project, release: str, names: Iterable[str]) -> Path:
    roots = [project.settings.root / "dockerfiles"]
    if TOOL_FILES not in roots:
        roots.append(TOOL_FILES)
    tried = []
    names = list(names)
    for name in names:
        for root in roots:
            for candidate in (root / path for path in candidates(release, [name])):
                tried.append(candidate)
                if candidate.is_file():
                    return candidate
    raise ConfigError(f"no Dockerfile for {' / '.join(names)} in release {release}",
                      hint="looked for: " + ", ".join(str(t) for t in tried))


def tool_file(name: str) -> bytes:
    """A file the tool ships next to its Dockerfiles (e.g. venv-layer)."""
    return (TOOL_FILES / name).read_bytes()


@dataclass(frozen=True)
class LibrarySlot:
    name: str
    version: str

    @property
    def arg(self) -> str:
        return re.sub(r"[^A-Z0-9]", "_", self.name.upper())


IF_LINE = re.compile(r"^#@if (\w+) (.*)$")


def render(template: str, libraries: Iterable[LibrarySlot], flags: dict[str, bool] | None = None) -> str:
    """Expand every ``#@library`` block once per library, in order (consecutive lines form one block), and
    keep ``#@if <flag> `` lines only where the flag is true (e.g. a service with dependencies of its own:
    an empty layer is never built, as the classic builder fails on some of them)."""
    out: list[str] = []
    block: list[str] = []
    libs = list(libraries)
    flags = flags or {}
    lines = []
    for line in template.splitlines():
        m = IF_LINE.match(line)
        if m:
            if flags.get(m.group(1), False):
                lines.append(m.group(2))
            continue
        lines.append(line)

    def flush() -> None:
        for lib in libs:
            out.extend(line.replace("{lib_arg}", lib.arg).replace("{lib_version}", lib.version).replace("{lib}", lib.name)
                       for line in block)
        block.clear()

    for line in lines:
        if line.startswith(LIBRARY_LINE):
            block.append(line[len(LIBRARY_LINE):])
            continue
        flush()
        out.append(line)
    flush()
    return "\n".join(out) + "\n"
