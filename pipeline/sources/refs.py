"""What a configured ref is: a branch, a release tag or a commit SHA, and the version a release tag names.
"""

from __future__ import annotations

import enum
import re

from packaging.version import InvalidVersion, Version

SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")


# Release tags of OpenStack projects: 32.1.0, 32.0.0.0rc1, 2024.1-eom.
VERSION_TAG_RE = re.compile(r"^\d+(\.\d+)+((\.0)?(a|b|rc)\d+)?$")


EOL_TAG_RE = re.compile(r"^\d{4}\.\d-(eom|eol)$")


BRANCH_PREFIXES = ("stable/", "unmaintained/", "feature/", "bugfix/")


class RefKind(enum.StrEnum):
    SHA = "sha"
    TAG = "tag"
    BRANCH = "branch"
    NAME = "name"  # branch or tag: only the remote can tell


def classify_ref(ref: str) -> RefKind:
    """Classify a ref by its spelling alone (no network)."""
    if SHA_RE.match(ref):
        return RefKind.SHA
    if VERSION_TAG_RE.match(ref) or EOL_TAG_RE.match(ref):
        return RefKind.TAG
    if ref.startswith(BRANCH_PREFIXES) or ref in ("master", "main"):
        return RefKind.BRANCH
    return RefKind.NAME


def release_version(ref: str) -> Version | None:
    """The package version a tag ref stands for, if it is a release version."""
    if not VERSION_TAG_RE.match(ref):
        return None
    try:
        return Version(ref)
    except InvalidVersion:
        return None
