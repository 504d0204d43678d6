"""Package versions of git commits, computed exactly as pbr computes them.

pbr (which every OpenStack project builds with) derives a version from git
history: a commit carrying a release tag is that version; otherwise the
nearest tagged commit in ``git log`` order gives the last version, which is
incremented (by Sem-Ver: commit footers, a pre-release bumps its own
counter: ``32.0.0.0rc1`` + 3 commits is ``32.0.0.0rc2.dev3``) and gets
``.dev<distance>``.  Tags that are no versions (``2025.1-eom``) are skipped.

The computation runs on the local mirror only (its history and tags were
fetched once), so the same commit gets the same version online and offline.
pbr's own ``SemanticVersion`` does the version arithmetic, so tag shapes
(``rc``, ``b``, ``a``, four-part versions) behave as in pbr.
"""

from __future__ import annotations

from pathlib import Path

from pbr.version import SemanticVersion

from pipeline.core.errors import GitError
from pipeline.core.git import text


def _semver(candidate: str) -> SemanticVersion | None:
    try:
        return SemanticVersion.from_pip_string(candidate)
    except (ValueError, TypeError, IndexError):
        return None


def is_version_tag(tag: str) -> bool:
    """Whether pbr reads ``tag`` as a version (``2025.1-eom`` is not one)."""
    return _semver(tag.replace("-", ".")) is not None


def tag_version(tag: str) -> str | None:
    """The version pbr gives a commit carrying release tag ``tag``."""
    semver = _semver(tag.replace("-", "."))
    return semver.release_string() if semver is not None else None


def _last_tag(repo: Path, commit: str) -> tuple[str, str, int]:
    """(tag as pbr names it, tag as git names it, commits walked) like pbr's ``_get_revno_and_last_tag``."""
    log = text("log", "--decorate=full", "--format=%h%x00%s%x00%d", commit, cwd=repo)
    row = 0
    for row, line in enumerate(line for line in log.split("\n") if line.count("\x00") == 2):
        refname = line.split("\x00")[2]
        found: dict[str, str] = {}
        if "refs/tags/" in refname:
            for tag_string in refname.strip()[1:-1].split("refs/tags/")[1:]:
                raw = tag_string.split(", ")[0]
                candidate = raw.replace("-", ".")
                if _semver(candidate) is not None:
                    found[candidate] = raw
        ordered = {candidate: semver for candidate in found if (semver := _semver(candidate)) is not None}
        if ordered:
            best = max(ordered, key=ordered.__getitem__)
            return best, found[best], row
    return "", "", row


def _increment_kwargs(repo: Path, commit: str, tag: str, raw_tag: str) -> dict[str, bool]:
    if tag and tag != raw_tag:
        return {}  # pbr asks git for "<renamed tag>..HEAD", which fails and reads as no footers
    try:
        messages = text("log", "--pretty=%B", f"{tag}..{commit}" if tag else commit, cwd=repo)
    except GitError:
        return {}
    symbols: set[str] = set()
    for line in messages.split("\n"):
        line = line.lower().strip()
        if line.startswith("sem-ver:"):
            symbols.update(s.strip() for s in line[len("sem-ver:"):].strip().split(","))
    result = {}
    if "feature" in symbols or "deprecation" in symbols:
        result["minor"] = True
    if "api-break" in symbols:
        result["major"] = True
    return result


def pbr_version(repo: Path, commit: str) -> str:
    """The version pbr computes for ``commit`` in ``repo`` (which holds its history and tags)."""
    try:
        tagged = text("describe", "--exact-match", commit, cwd=repo).strip().replace("-", ".")
        target = _semver(tagged)
    except GitError:
        target = None
    tag, raw_tag, distance = _last_tag(repo, commit)
    last = _semver(tag or "0")
    assert last is not None
    if distance == 0:
        return str(last.release_string())
    new = last.increment(**_increment_kwargs(repo, commit, tag, raw_tag))
    if target is not None and new > target:
        # pbr refuses to build such a tree; the tag's own version is what it was released as.
        return str(target.release_string())
    new_dev = new.to_dev(distance)
    if target is not None:
        target_dev = target.to_dev(distance)
        if target_dev > new_dev:
            return str(target_dev.release_string())
    return str(new_dev.release_string())
