"""Constraint overrides: ``overrides/<R>/constraints.txt`` parsed and merged, marker-aware, into upstream's pins.

Owns the override format (a pin, a removal, the comment block above as the
reason), which Python and platform environments a marker covers, narrowing an
upstream pin an override covers only in part, and the merge with its changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pipeline.core.errors import (
    OverrideError,
)

NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


REMOVAL_RE = re.compile(r"^-\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*$")


# Environments a marker is evaluated in to decide which pins overlap: every
# CPython an OpenStack release has supported or will, on the usual platforms.
_PYTHONS = [f"3.{minor}" for minor in range(6, 16)]


_PLATFORMS = [("linux", "Linux", "posix"), ("darwin", "Darwin", "posix"), ("win32", "Windows", "nt")]


ENVIRONMENTS = [
    {"python_version": py, "python_full_version": f"{py}.0", "sys_platform": plat, "platform_system": system,
     "os_name": os_name, "platform_machine": "x86_64", "implementation_name": "cpython",
     "platform_python_implementation": "CPython", "implementation_version": f"{py}.0", "platform_release": "",
     "platform_version": "", "extra": ""}
    for py in _PYTHONS for plat, system, os_name in _PLATFORMS
]


def applies(marker: str | None) -> frozenset[int]:
    """The environments (indexes into ENVIRONMENTS) where a pin with ``marker`` applies."""
    if not marker:
        return frozenset(range(len(ENVIRONMENTS)))
    parsed = Marker(marker)
    return frozenset(i for i, env in enumerate(ENVIRONMENTS) if parsed.evaluate(env))


_INVERSE = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">", "in": "not in", "not in": "in"}


def negate(marker: str) -> str | None:
    """A marker true exactly where ``marker`` is false, or None if it cannot be written (``===``, ``~=``)."""

    # packaging's parsed form (Marker._markers): Variable, Value and Op nodes, nested lists, "and"/"or"; private.
    def atom(item: Any) -> str:
        return item.value if type(item).__name__ == "Variable" else repr(str(item.value))

    def walk(markers: list[Any]) -> str | None:
        parts = []
        for item in markers:
            if isinstance(item, str):
                parts.append({"and": "or", "or": "and"}[item])
            elif isinstance(item, list):
                inner = walk(item)
                if inner is None:
                    return None
                parts.append(f"({inner})")
            else:
                left, op, right = item
                inverse = _INVERSE.get(op.value)
                if inverse is None:
                    return None
                parts.append(f"{atom(left)} {inverse} {atom(right)}")
        return " ".join(parts)

    try:
        return walk(Marker(marker)._markers)  # packaging's parsed form; stable since packaging 22
    except (InvalidMarker, AttributeError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Override:
    line_no: int
    name: str  # canonical
    spelled: str  # as written
    text: str  # the pin as written (comment stripped), or "" for a removal
    version: str | None
    marker: str | None
    reason: str | None  # the comment block just above the line, and a trailing comment

    @property
    def removal(self) -> bool:
        return self.version is None


@dataclass(frozen=True)
class Change:
    name: str
    action: str  # replaced | added | removed | narrowed
    old: tuple[str, ...]
    new: tuple[str, ...]
    why: str  # "override line N" or "built from patched source (component)"
    reason: str | None = None
    source: str | None = None  # overrides file and line


@dataclass(frozen=True)
class MergeResult:
    lines: tuple[str, ...]
    changes: tuple[Change, ...] = field(default_factory=tuple)


def canonical_name(line: str) -> str | None:
    """Canonical package name of a constraints line; None for blanks and comments."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    m = NAME_RE.match(stripped)
    return canonicalize_name(m.group(1)) if m else None


def _marker_of(line: str) -> str | None:
    _, _, marker = line.partition(";")
    return marker.strip() or None


def parse_overrides(text: str, path: str) -> list[Override]:
    """Parse an override file; raise OverrideError naming file and line on bad input."""
    overrides: list[Override] = []
    comment: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line, _, trailing = raw.partition("#")
        line = line.strip()
        if not line:
            comment = [] if not raw.strip() else [*comment, raw.strip().lstrip("#").strip()]
            continue
        reason = " ".join([*comment, trailing.strip()]).strip() or None
        comment = []
        removal = REMOVAL_RE.match(line)
        if removal:
            overrides.append(Override(number, canonicalize_name(removal.group(1)), removal.group(1), "", None, None, reason))
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise OverrideError(f"{path}:{number}: cannot parse {line!r}: {exc}",
                                hint="write `name===version`, optionally with `;marker`, or `-name` to remove a pin") from None
        specs = list(req.specifier)
        if req.url or req.extras or len(specs) != 1 or specs[0].operator != "===":
            raise OverrideError(f"{path}:{number}: {line!r} is not an exact pin",
                                hint="upper-constraints pins use `name===version` (three equals signs), or `-name` to remove a pin")
        overrides.append(Override(number, canonicalize_name(req.name), req.name, line, specs[0].version,
                                  str(req.marker) if req.marker else None, reason))
    _check_consistent(overrides, path)
    return overrides


def _check_consistent(overrides: list[Override], path: str) -> None:
    seen: dict[str, list[Override]] = {}
    for item in overrides:
        for other in seen.get(item.name, []):
            if other.spelled != item.spelled:
                raise OverrideError(
                    f"{path}:{item.line_no}: {item.spelled} repeats {other.spelled} of line {other.line_no} "
                    "under another spelling (package names compare canonically)",
                    hint="keep one override per package; write the name the same way on every line",
                )
            if other.removal or item.removal:
                raise OverrideError(f"{path}:{item.line_no}: conflicts with line {other.line_no} for {item.name}",
                                    hint="a removal (`-name`) cannot be combined with pins of the same package")
            if applies(other.marker) & applies(item.marker):
                raise OverrideError(
                    f"{path}:{item.line_no}: {item.text!r} overlaps {other.text!r} of line {other.line_no}: "
                    "both apply to some Python versions",
                    hint="give the pins markers that do not overlap (e.g. python_version<'3.12' and >='3.12'), or keep one",
                )
        seen.setdefault(item.name, []).append(item)


def merge(upstream: str, overrides: list[Override], built_from_source: dict[str, str],
          overrides_path: str = "overrides") -> MergeResult:
    """Apply overrides and drop pins of packages built from patched source.

    An override without a marker replaces every upstream pin of its package;
    one with a marker replaces the upstream pins it covers and narrows those
    it partly overlaps (their marker gains the override's negation), so every
    other Python keeps its upstream pin.  Untouched lines keep their order and
    text; a package's new pins take the place of its first upstream line.
    """
    for item in overrides:
        if not item.removal and item.name in built_from_source:
            raise OverrideError(
                f"{overrides_path}:{item.line_no}: pins {item.name}, which is built from patched source "
                f"({built_from_source[item.name]})",
                hint="remove the override: the patched source decides that package's version",
            )
    by_name: dict[str, list[Override]] = {}
    for item in overrides:
        by_name.setdefault(item.name, []).append(item)
    upstream_lines: dict[str, list[str]] = {}
    for line in upstream.splitlines():
        name = canonical_name(line)
        if name:
            upstream_lines.setdefault(name, []).append(line)

    replacement: dict[str, list[str]] = {}
    changes: list[Change] = []
    for name, items in by_name.items():
        old = upstream_lines.get(name, [])
        where = f"{overrides_path}:" + ",".join(str(o.line_no) for o in items)
        why = "override line " + ", ".join(str(o.line_no) for o in items)
        reason = "; ".join(dict.fromkeys(o.reason for o in items if o.reason)) or None
        if any(o.removal for o in items):
            replacement[name] = []
            changes.append(Change(name, "removed" if old else "removed (absent upstream)", tuple(old), (), why, reason, where))
            continue
        covered = frozenset().union(*(applies(o.marker) for o in items))
        kept: list[str] = []
        for line in old:
            marker = _marker_of(line)
            upstream_envs = applies(marker)
            rest = upstream_envs - covered
            if not upstream_envs or rest == upstream_envs:
                kept.append(line)  # applies nowhere we model, or untouched by the override
            elif rest:
                narrowed = _narrow(line, marker, [o for o in items if o.marker], rest, overrides_path)
                kept.append(narrowed)
        new = [*(o.text for o in items), *kept]
        action = "replaced" if old else "added"
        if kept and old:
            action = "replaced for some Pythons"
        replacement[name] = new
        changes.append(Change(name, action, tuple(old), tuple(new), why, reason, where))

    out: list[str] = []
    placed: set[str] = set()
    for line in upstream.splitlines():
        name = canonical_name(line)
        if name in built_from_source:
            continue
        if name in replacement:
            if name not in placed:
                placed.add(name)
                out.extend(replacement[name])
            continue
        out.append(line)
    for name, lines in replacement.items():
        if name not in placed:
            out.extend(lines)
    for name, component in built_from_source.items():
        if name in upstream_lines:
            changes.append(Change(name, "removed", tuple(upstream_lines[name]), (), f"built from patched source ({component})"))
    return MergeResult(tuple(out), tuple(changes))


def _narrow(line: str, marker: str | None, items: list[Override], rest: frozenset[int], path: str) -> str:
    """The upstream pin ``line`` restricted to the environments no override covers."""
    negations = []
    for item in items:
        negation = negate(item.marker or "")
        if negation is None:
            raise OverrideError(
                f"{path}:{item.line_no}: {item.text!r} covers part of the upstream pin {line!r}, and its marker "
                "cannot be negated to keep the upstream pin for the other Pythons",
                hint="add overrides for the other Pythons as well, or use a marker with <, <=, >, >=, == or !=",
            )
        negations.append(f"({negation})")
    pin = line.split(";", 1)[0].strip()
    narrowed = f"{pin};" + " and ".join(([f"({marker})"] if marker else []) + negations)
    if applies(_marker_of(narrowed)) != rest:  # never write a marker that means something else
        raise OverrideError(f"{path}: cannot restrict {line!r} to the Pythons the overrides leave",
                            hint="write overrides for every Python the upstream pins cover")
    return narrowed
