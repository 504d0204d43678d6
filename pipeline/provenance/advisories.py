"""Security advisories as inputs: the two sources, fetched or read, and every advisory parsed.

Owns the settings ``ossa`` (openstack/ossa: ``ossa/OSSA-*.yaml``) and
``pypa_advisories`` (pypa/advisory-database: ``vulns/<package>/*.yaml``,
OSV format).  Each is a git URL, fetched like the sources (a shallow mirror
under ``cache_dir/git``, its lock, the configured proxies and CA bundle; one
``git ls-remote`` when nothing changed) and exported once per commit under
``cache_dir/advisories/``, or a local folder read as it is.

Every affected range becomes alternatives of ``packaging`` specifier sets,
however the advisory writes it: ``'>=28.0.0 <28.0.2, ==29.0.0'``, OSV
events, and the prose of the advisories before September 2015 ("up to
2014.1.3", "All versions").  OpenStack projects numbered their releases by
date until 2015 (``2015.1.0``) and semantically since (``11.0.0``, later
than any of those), so for them every semantic version gets epoch 1: the
ranges of old advisories then never take in a current release, as a plain
version comparison (and many scanners) would.  A file that cannot be read
is listed in ``Database.skipped`` with what is wrong, never raised.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ADVISORY_ID_RE = re.compile(r"\b(?:OSSA-\d{4}-\d{3,}|PYSEC-\d{4}-\d+|GHSA(?:-[23456789cfghjmpqrvwx]{4}){3})\b")
BUG_RE = re.compile(r"launchpad\.net/(?:[^/\s]+/\+)?bugs?/(\d+)")
REVIEW_RE = re.compile(r"(?:/\+/|/c/|#/c/|\.org/)(\d+)/?$")
REVIEW_KEY_RE = re.compile(r"^\s*([^\s(]+)\s*(?:\((.*)\))?")
DATE_BASED_FROM = 2010  # a release number from this up is a year: OpenStack's date-based versions (2011.1 .. 2015.1)



@dataclass(frozen=True)
class Alternative:
    """One alternative of an affected range: the text that says it and the specifier set it stands for."""

    text: str
    specifiers: SpecifierSet  # over ordered() versions

    @property
    def fixed(self) -> str:
        """Where the range ends, in words: ``fixed in 28.0.2``, ``fixed after 28.0.0`` or no fix yet."""
        bounds = {s.operator: s.version.split("!")[-1] for s in self.specifiers}
        if "<" in bounds:
            return f"fixed in {bounds['<']}"
        for op in ("<=", "==", "==="):
            if op in bounds:
                return f"fixed after {bounds[op]}"
        return "no fixed version named"


@dataclass(frozen=True)
class Affected:
    """The versions of one package an advisory affects."""

    package: str  # canonical distribution name
    text: str  # the range as the advisory writes it
    alternatives: tuple[Alternative, ...]
    openstack: bool  # date-based versions precede semantic ones
    reading: str = ""  # how a range given in prose was read, for the evidence
    listed: frozenset[str] = frozenset()  # OSV: versions named one by one, as written

    def containing(self, version: str) -> Alternative | None:
        """The alternative that contains ``version``, if any."""
        try:
            key = ordered(version, self.openstack)
        except InvalidVersion:
            return None
        hit = next((a for a in self.alternatives if a.specifiers.contains(key, prereleases=True)), None)
        if hit is None and (version in self.listed or str(Version(version)) in self.listed):
            return Alternative(f"=={version} (listed)", SpecifierSet(f"=={key}"))
        return hit


@dataclass(frozen=True)
class Advisory:
    id: str  # OSSA-2026-005, PYSEC-2024-60, GHSA-...
    source: str  # ossa | pypa_advisories
    file: str  # the file, relative to its source's folder
    title: str
    date: str
    url: str
    cves: tuple[str, ...]  # real CVE identifiers (not "CVE-2026-pending")
    aliases: tuple[str, ...]  # every other identifier it is known by
    bugs: tuple[str, ...]  # Launchpad bug numbers
    reviews: Mapping[str, tuple[str, ...]]  # series ("2025.2/flamingo") -> Gerrit review URLs
    affected: tuple[Affected, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.cves, *self.aliases)

    def reviews_for(self, project: str, release: str | None = None) -> tuple[str, ...]:
        """The Gerrit reviews of a project (for one release's series) the advisory names.

        Keys look like ``2025.2/flamingo``, ``2025.2/flamingo(keystone)`` or
        ``2024.1/caracal (unmaintained)``: a project in parentheses limits
        the reviews to it.
        """
        found: list[str] = []
        for key, urls in self.reviews.items():
            m = REVIEW_KEY_RE.match(key)
            series, note = (m.group(1), (m.group(2) or "").strip()) if m else (key, "")
            if note and note != "unmaintained" and canonicalize_name(note) != canonicalize_name(project):
                continue
            if release is None or series.split("/")[0] == release:
                found += urls
        return tuple(found)

    def review_numbers(self, project: str, release: str | None = None) -> list[str]:
        return [m.group(1) for url in self.reviews_for(project, release) if (m := REVIEW_RE.search(url))]


def ordered(version: str, openstack: bool) -> Version:
    """A version on a scale where an OpenStack project's date-based releases come before its semantic ones."""
    parsed = Version(version)
    if openstack and not parsed.epoch and parsed.release[0] < DATE_BASED_FROM and parsed.release != (0,):
        return Version(f"1!{parsed}")
    return parsed


def _specifiers(specs: Iterable[tuple[str, str]], openstack: bool) -> SpecifierSet:
    return SpecifierSet(",".join(f"{op}{ordered(v, openstack)}" for op, v in specs))


# --- the sources ---------------------------------------------------------------------


# --- parsing ---------------------------------------------------------------------------


