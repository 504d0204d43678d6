"""Constraints stage: the release's upper-constraints with overrides merged.

Owns where upstream upper-constraints come from (a snapshot in
``releases/<release>/`` or ``constraints_url``, cached), the override file
syntax of ``overrides/<release>/constraints.txt``, and the effective file at
``<workdir>/<release>/upper-constraints.txt`` with its explanatory header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .config import Project
from .errors import ConfigError, OverrideError
from .net import fetch_url
from .stamps import sha256_bytes, write_atomic

NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
REMOVAL_RE = re.compile(r"^-\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*$")


@dataclass(frozen=True)
class Override:
    line_no: int
    name: str  # canonical
    text: str  # the pin as written, or "" for a removal
    version: str | None
    marker: str | None
    reason: str | None  # the comment block just above the line

    @property
    def removal(self) -> bool:
        return self.version is None


@dataclass(frozen=True)
class Change:
    name: str
    action: str  # replaced | added | removed
    old: tuple[str, ...]
    new: tuple[str, ...]
    why: str  # "override line N" or "built from patched source"
    reason: str | None = None


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


def parse_overrides(text: str, path: Path | str) -> list[Override]:
    """Parse an override file; raise OverrideError naming file and line on bad input."""
    overrides: list[Override] = []
    comment: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            comment = []
            continue
        if line.startswith("#"):
            comment.append(line.lstrip("#").strip())
            continue
        reason = " ".join(comment) or None
        comment = []
        removal = REMOVAL_RE.match(line)
        if removal:
            overrides.append(Override(number, canonicalize_name(removal.group(1)), "", None, None, reason))
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise OverrideError(
                f"{path}:{number}: cannot parse {line!r}: {exc}",
                hint="write `name===version`, optionally with `;marker`, or `-name` to remove a pin",
            ) from None
        specs = list(req.specifier)
        if req.url or req.extras or len(specs) != 1 or specs[0].operator != "===":
            raise OverrideError(
                f"{path}:{number}: {line!r} is not an exact pin",
                hint="upper-constraints pins use `name===version` (three equals signs), or `-name` to remove a pin",
            )
        overrides.append(Override(number, canonicalize_name(req.name), line, specs[0].version,
                                  str(req.marker) if req.marker else None, reason))
    _check_consistent(overrides, path)
    return overrides


def _check_consistent(overrides: list[Override], path: Path | str) -> None:
    seen: dict[str, list[Override]] = {}
    for item in overrides:
        for other in seen.get(item.name, []):
            same_marker = other.marker == item.marker
            if other.removal != item.removal or (same_marker and other.version != item.version):
                raise OverrideError(
                    f"{path}:{item.line_no}: conflicts with line {other.line_no} for {item.name}",
                    hint="keep one override per package (several pins are fine only with different markers)",
                )
        seen.setdefault(item.name, []).append(item)


def merge(upstream: str, overrides: list[Override], built_from_source: dict[str, str]) -> MergeResult:
    """Apply overrides and drop pins of packages built from patched source.

    Untouched lines keep their order and text; a replaced package's new pins
    take the place of its first upstream line; added pins go at the end.
    """
    for item in overrides:
        if not item.removal and item.name in built_from_source:
            raise OverrideError(
                f"line {item.line_no}: pins {item.name}, which is built from patched source ({built_from_source[item.name]})",
                hint="remove the override: the patched source decides that package's version",
            )
    by_name: dict[str, list[Override]] = {}
    for item in overrides:
        if not any(o.text == item.text for o in by_name.get(item.name, [])):
            by_name.setdefault(item.name, []).append(item)

    old_lines: dict[str, list[str]] = {}
    for line in upstream.splitlines():
        name = canonical_name(line)
        if name:
            old_lines.setdefault(name, []).append(line)

    out: list[str] = []
    placed: set[str] = set()
    for line in upstream.splitlines():
        name = canonical_name(line)
        if name in built_from_source:
            continue
        if name in by_name:
            if name not in placed:
                placed.add(name)
                out.extend(o.text for o in by_name[name] if not o.removal)
            continue
        out.append(line)
    for name, items in by_name.items():
        if name not in placed and name not in built_from_source:
            out.extend(o.text for o in items if not o.removal)

    changes: list[Change] = []
    for name, items in by_name.items():
        old = tuple(old_lines.get(name, ()))
        new = tuple(o.text for o in items if not o.removal)
        action = "removed" if not new else ("replaced" if old else "added")
        if action == "removed" and not old:
            action = "removed (absent upstream)"
        reason = next((o.reason for o in items if o.reason), None)
        changes.append(Change(name, action, old, new, "override line " + ", ".join(str(o.line_no) for o in items), reason))
    for name, component in built_from_source.items():
        if name in old_lines:
            changes.append(Change(name, "removed", tuple(old_lines[name]), (), f"built from patched source ({component})"))
    return MergeResult(tuple(out), tuple(changes))


def header(release: str, source: str, source_sha: str, overrides_path: str | None, changes: tuple[Change, ...]) -> list[str]:
    lines = [
        f"# Effective upper-constraints for OpenStack {release}, generated by openstack-patches.",
        f"# upstream: {source} (sha256 {source_sha[:16]})",
        f"# overrides: {overrides_path or 'none'}",
    ]
    for change in changes:
        old = ", ".join(change.old) or "-"
        new = ", ".join(change.new) or "-"
        lines.append(f"# {change.action}: {change.name}: {old} -> {new} ({change.why})")
    if not changes:
        lines.append("# no changes")
    return lines


# --- the stage -------------------------------------------------------------------


def constraints_url(project: Project, release: str) -> str:
    """The release's ``constraints_url`` (release.yaml, else settings), as a URL."""
    rel = project.release(release)
    url = (rel.constraints_url or project.settings.constraints_url).format(release=release)
    if "://" not in url:
        path = Path(url)
        url = (path if path.is_absolute() else project.settings.root / path).resolve().as_uri()
    return url


def _download(project: Project, release: str, url: str) -> bytes:
    body, _ = fetch_url(url, project.settings.ca_bundle)
    if not body.strip():
        raise ConfigError(f"{url}: upper-constraints for {release} is empty")
    return body


def upstream_text(project: Project, release: str, refresh: bool = False) -> tuple[str, str]:
    """(text, where it came from): the snapshot if the repository has one, else the URL (cached)."""
    snapshot = project.release(release).constraints_snapshot
    if snapshot.exists():
        return snapshot.read_text(), str(snapshot.relative_to(project.settings.root))
    url = constraints_url(project, release)
    cache = project.settings.cache_dir / "constraints" / f"{release}-{sha256_bytes(url.encode())[:12]}.txt"
    if refresh or not cache.exists():
        write_atomic(cache, _download(project, release, url))
    return cache.read_text(), url


def update_snapshot(project: Project, release: str) -> Path:
    """Write or refresh ``releases/<release>/upper-constraints.txt`` from constraints_url."""
    snapshot = project.release(release).constraints_snapshot
    write_atomic(snapshot, _download(project, release, constraints_url(project, release)))
    return snapshot


def overrides_path(project: Project, release: str) -> Path:
    return project.overrides_dir / release / "constraints.txt"


def effective_path(project: Project, release: str) -> Path:
    return project.settings.workdir / release / "upper-constraints.txt"


def effective(project: Project, release: str, refresh: bool = False) -> tuple[str, MergeResult]:
    """The effective constraints file's content and the changes, without writing anything."""
    text, description = upstream_text(project, release, refresh)
    path = overrides_path(project, release)
    overrides = parse_overrides(path.read_text(), path.relative_to(project.settings.root)) if path.exists() else []
    try:
        result = merge(text, overrides, project.built_from_source(release))
    except OverrideError as error:
        raise OverrideError(f"{path.relative_to(project.settings.root)}:{error.message.removeprefix('line ')}", error.hint) from None
    lines = header(release, description, sha256_bytes(text.encode()),
                   str(path.relative_to(project.settings.root)) if path.exists() else None, result.changes)
    return "\n".join(lines + list(result.lines)) + "\n", result


def build(project: Project, release: str, refresh: bool = False) -> tuple[Path, MergeResult]:
    """Write the effective constraints file of a release; return its path and the changes."""
    content, result = effective(project, release, refresh)
    out = effective_path(project, release)
    if not out.exists() or out.read_text() != content:
        write_atomic(out, content)
    return out, result
