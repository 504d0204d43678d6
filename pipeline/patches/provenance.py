"""What a patch says of itself: its trailers, the upstream commit or change it names, the bugs and CVEs it resolves, and whether its paths are safe to apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from pipeline.patches.patchfile import SYMLINK_MODE, TRAILER_RE, PatchMeta

CVE_RE = re.compile(r"\bCVE-\d{4}-\d{4,}\b")


CHERRY_PICK_RE = re.compile(r"\(cherry picked from commit ([0-9a-f]{7,40})\)")


CHANGE_ID_RE = re.compile(r"^Change-Id:\s*(I[0-9a-f]{40})\s*$", re.MULTILINE)


BUG_TRAILERS = ("Closes-Bug", "Partial-Bug", "Related-Bug")


PATCH_TYPES = ("unofficial", "monkey", "backport", "cherry-pick")


def trailers(message: str) -> list[tuple[str, str]]:
    """``Key: value`` trailers of the last paragraph of a commit message; never of its subject (as git: a
    message that is a subject alone, such as ``rabbit: Fix ignored error``, has no trailers)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return []
    found = []
    for line in paragraphs[-1].splitlines():
        m = TRAILER_RE.match(line.strip())
        if m:
            found.append((m.group(1), m.group(2)))
    return found


@dataclass(frozen=True)
class Provenance:
    """What a patch says about where it comes from and what it fixes."""

    patch_type: str  # backport | cherry-pick | unofficial | monkey
    change_id: str | None
    cherry_picked_from: tuple[str, ...]
    bugs: tuple[tuple[str, str], ...]  # (trailer, bug number)
    cves: tuple[str, ...]


def provenance(meta: PatchMeta) -> Provenance:
    message = meta.message
    keys = {k.lower(): v for k, v in trailers(message)}
    picked = tuple(dict.fromkeys(CHERRY_PICK_RE.findall(message)))
    change = CHANGE_ID_RE.findall(message)
    explicit = keys.get("patch-type", "").strip().lower()
    if explicit in PATCH_TYPES:
        kind = explicit
    elif picked or change:
        kind = "backport"
    else:
        kind = "unofficial"
    bugs: list[tuple[str, str]] = []
    for key, value in trailers(message):
        if key in BUG_TRAILERS:
            for number in re.findall(r"#?(\d+)", value):
                if number not in {b for _, b in bugs}:
                    bugs.append((key, number))
    cves = tuple(dict.fromkeys(CVE_RE.findall(f"{meta.subject}\n{message}")))
    return Provenance(kind, change[-1] if change else None, picked, tuple(bugs), cves)


def _escapes(link: str, target: str) -> bool:
    """Whether a symbolic link at ``link`` pointing to ``target`` resolves outside the tree."""
    if PurePosixPath(target).is_absolute():
        return True
    depth = 0
    for part in (PurePosixPath(link).parent / target).parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return True
    return False


def unsafe_paths(meta: PatchMeta, symlinks: set[str]) -> list[str]:
    """Reasons this patch must not be applied to a tree whose symbolic links are ``symlinks``."""
    problems: list[str] = []
    links = set(symlinks) | {c.new_path for c in meta.changes if c.new_mode == SYMLINK_MODE and c.new_path}
    for change in meta.changes:
        for path in dict.fromkeys(p for p in (change.old_path, change.new_path) if p):
            pure = PurePosixPath(path)
            if pure.is_absolute():
                problems.append(f"{path}: absolute path")
                continue
            if ".." in pure.parts:
                problems.append(f"{path}: escapes the source tree ('..')")
                continue
            if ".git" in pure.parts:
                problems.append(f"{path}: writes into the .git directory")
                continue
            for depth in range(1, len(pure.parts)):
                prefix = str(PurePosixPath(*pure.parts[:depth]))
                if prefix in links:
                    problems.append(f"{path}: writes through the symbolic link {prefix}")
                    break
        if change.new_mode == SYMLINK_MODE and change.new_path and change.symlink_target is not None:
            if _escapes(change.new_path, change.symlink_target):
                verb = "points the symbolic link" if change.old_path else "creates a symbolic link"
                problems.append(f"{change.new_path}: {verb} to {change.symlink_target}, outside the source tree")
    return problems


def symlinks_after(meta: PatchMeta, symlinks: set[str]) -> set[str]:
    """The tree's symbolic links once ``meta`` is applied."""
    result = set(symlinks)
    for change in meta.changes:
        if change.old_path:
            result.discard(change.old_path)
        if change.new_path and change.new_mode == SYMLINK_MODE:
            result.add(change.new_path)
    return result
