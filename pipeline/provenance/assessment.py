"""Which advisories touch each built image, and where each stands: ``invoke advisories``.

Owns the status of every advisory that names a Python distribution an image
installs (the service, its patched libraries, every third-party one), read
from the image's records only: ``image.json`` (versions, patches with their
messages, constraint overrides) and ``sbom.cdx.json`` (what is installed).

- ``fixed by patch``: the installed version is in the range and a patch of
  that component names the advisory (its id or a CVE of it), carries
  ``Closes-Bug`` for one of its Launchpad bugs, or is the Gerrit change it
  names as a review (``Gerrit-Change:``, as ``patches.import`` writes it);
- ``fixed by override``: a constraint override moved the package out of a
  range that holds the version upstream pins;
- ``not affected``: the version is outside the range;
- ``affected``: nothing fixes it, with where the range ends and the
  advisory's reviews for the release's series.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pipeline.core import console, locks
from pipeline.core.errors import UnknownComponentError
from pipeline.core.files import read_json
from pipeline.core.releases import Project
from pipeline.image import record as image_record
from pipeline.image.record import DocumentRecord, ImageRecord
from pipeline.patches.provenance import CVE_RE, trailers
from pipeline.provenance.advisories import ADVISORY_ID_RE, Advisory, Affected
from pipeline.provenance.advisory_database import Database

AFFECTED, FIXED_BY_PATCH, FIXED_BY_OVERRIDE, NOT_AFFECTED = "affected", "fixed by patch", "fixed by override", "not affected"
STATUSES = (AFFECTED, FIXED_BY_PATCH, FIXED_BY_OVERRIDE, NOT_AFFECTED)  # the order of the report


@dataclass(frozen=True)
class Finding:
    release: str
    service: str
    advisory: Advisory
    package: str  # canonical name, as installed
    version: str
    status: str
    evidence: str
    fixed: str = ""  # affected: where the range ends
    patches: tuple[str, ...] = ()  # fixed by patch: the patch files
    component: str | None = None  # the package is built from this component's patched source

    def to_dict(self) -> dict[str, Any]:
        a = self.advisory
        return {"release": self.release, "service": self.service, "advisory": a.id, "source": a.source, "file": a.file,
                "url": a.url, "title": a.title, "date": a.date, "cves": list(a.cves), "aliases": list(a.aliases),
                "package": self.package, "version": self.version, "range": a.affected[0].text, "status": self.status,
                "evidence": self.evidence, "fixed": self.fixed or None, "patches": list(self.patches),
                "reviews": list(a.reviews_for(self.component or self.package, self.release)), "component": self.component}


@dataclass(frozen=True)
class Image:
    """What the assessment reads of one built image: its record and what its SBOM says is installed."""

    release: str
    service: str
    record: ImageRecord
    installed: dict[str, str]  # canonical name -> version

    @property
    def tag(self) -> str:
        return self.record.immutable_tag


def read_image(project: Project, release: str, service: str) -> Image | str:
    """The image's records, or why it cannot be assessed."""
    layout = project.layout
    record = image_record.read(layout.image_record(release, service))
    if record is None:
        return f"not built (invoke build --release {release} --service {service})"
    if DocumentRecord.current(layout.sbom_record(release, service), record, layout.sbom_file(release, service)) is None:
        return f"no SBOM of its current image (invoke sbom --release {release} --service {service})"
    sbom = read_json(layout.sbom_file(release, service))
    installed: dict[str, str] = {canonicalize_name(c["name"]): c["version"] for c in sbom.get("components", [])
                 if str(c.get("purl", "")).startswith("pkg:pypi/")}
    return Image(release, service, record, installed)


def patch_fixes(advisory: Advisory, component: str, message: str) -> str | None:
    """Why a patch of ``component`` with this commit message fixes the advisory, if it says so."""
    named = [i for i in dict.fromkeys((*ADVISORY_ID_RE.findall(message), *CVE_RE.findall(message))) if i in advisory.ids]
    if named:
        return f"names {', '.join(named)}"
    found = trailers(message)
    bugs = [n for key, value in found if key == "Closes-Bug" for n in re.findall(r"\d+", value) if n in advisory.bugs]
    if bugs:
        return f"Closes-Bug #{bugs[0]}, the advisory's bug"
    reviews = advisory.review_numbers(component)
    for key, value in found:
        number = value.split("/")[0].strip()
        if key == "Gerrit-Change" and number in reviews:
            return f"Gerrit change {number}, a review of the advisory"
    return None


def _upstream_pins(change: dict[str, Any] | None) -> list[str]:
    """The versions upstream pinned for a package that a constraint override changed."""
    if not change or not change.get("source"):
        return []  # no override: a pin dropped because the package is built from source
    versions = []
    for line in change["old"]:
        try:
            versions += [s.version for s in Requirement(line).specifier if s.operator in ("==", "===")]
        except InvalidRequirement:
            continue
    return versions


def _not_affected(version: str, affected: Affected) -> str:
    evidence = f"{version} is outside {affected.text!r}"
    if affected.reading:
        evidence += f" ({affected.reading})"
    elif affected.openstack and any(re.match(r"^[<=]+20\d\d", a.text) for a in affected.alternatives):
        evidence += "; date-based versions such as 2015.1 precede semantic ones"
    return evidence


def assess(image: Image, database: Database) -> list[Finding]:
    """Every advisory naming a distribution the image installs, with its status and evidence."""
    record = image.record
    component_of: dict[str, str] = {canonicalize_name(dist): c for c, dist in record.dist_names.items()}
    changes: dict[str, Any] = {canonicalize_name(c["name"]): c for c in record.constraints["changes"]}
    findings: list[Finding] = []
    for package, version in sorted(image.installed.items()):
        component = component_of.get(package)
        patches = [p for p in record.patches if p["component"] == component]
        for advisory in database.for_package(package):
            affected = advisory.affected[0]
            finding = functools.partial(Finding, release=image.release, service=image.service, advisory=advisory,
                                        package=package, version=version, component=component)
            hit = affected.containing(version)
            if hit is not None:
                fixes = [(p["file"], why) for p in patches
                         if component is not None and (why := patch_fixes(advisory, component, p["message"]))]
                if fixes:
                    findings.append(finding(status=FIXED_BY_PATCH, patches=tuple(f for f, _ in fixes),
                                            evidence="; ".join(f"{f.rsplit('/', 1)[-1]} {why}" for f, why in fixes)))
                    continue
                reviews = advisory.reviews_for(component or package, image.release)
                evidence = f"{version} is in {hit.text!r}; {hit.fixed}"
                if reviews:
                    evidence += f"; {image.release} review {', '.join(reviews)}"
                findings.append(finding(status=AFFECTED, evidence=evidence, fixed=hit.fixed))
                continue
            change = changes.get(package)
            pinned = next((v for v in _upstream_pins(change) if affected.containing(v)), None)
            if pinned is not None:
                assert change is not None  # the pin is upstream's, from the override's change
                findings.append(finding(status=FIXED_BY_OVERRIDE,
                                        evidence=f"{change['source']} pins {version} instead of upstream {pinned} "
                                                 f"(in {affected.text!r})"))
            else:
                findings.append(finding(status=NOT_AFFECTED, evidence=_not_affected(version, affected)))
    return findings


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    images: tuple[dict[str, Any], ...]  # {release, service, image, assessed, reason, counts}
    database: Database = field(repr=False)

    @property
    def affected(self) -> list[Finding]:
        return [f for f in self.findings if f.status == AFFECTED]

    def to_dict(self) -> dict[str, Any]:
        return {"sources": dict(self.database.sources), "images": list(self.images),
                "findings": [f.to_dict() for f in self.findings], "skipped": list(self.database.skipped)}


def selection(project: Project, releases: list[str], services: list[str]) -> list[tuple[str, str]]:
    """(release, service) for the named releases (default all) and services (default every service)."""
    names = releases or list(project.releases)
    chosen = [(r, s) for r in names for s in project.release(r).services if not services or s in services]
    for service in services:
        if not any(s == service for _, s in chosen):
            raise UnknownComponentError(f"no release of {', '.join(names)} builds a service {service!r}",
                                        hint=f"services: {', '.join(sorted({s for r in names for s in project.release(r).services}))}")
    return chosen


def report(project: Project, releases: list[str], services: list[str], refresh: bool) -> Report:
    """Assess every selected image that has been built; write its VEX again when the advisories changed it."""
    from pipeline.provenance import advisory_database, vex

    chosen = selection(project, releases, services)
    images: list[Image] = []
    rows: list[dict[str, Any]] = []
    for release, service in chosen:
        found = read_image(project, release, service)
        if isinstance(found, str):
            rows.append({"release": release, "service": service, "image": None, "assessed": False, "reason": found})
        else:
            images.append(found)
    database = advisory_database.load(project, refresh=refresh)
    findings: list[Finding] = []
    for image in images:
        assessed = assess(image, database)
        findings += assessed
        counts = {s: sum(f.status == s for f in assessed) for s in STATUSES}
        rows.append({"release": image.release, "service": image.service, "image": image.tag, "assessed": True,
                     "reason": None, "counts": counts})
        with locks.hold(project.layout.lock(f"{image.release}-{image.service}"),
                        f"the image of {image.service} ({image.release})"):
            path, _, action = vex.generate(project, image.release, image.service, findings=assessed)
        if action != "up to date":
            console.note(f"vex {action}: {project.layout.rel(path)}")
    database.save()
    order = {pair: i for i, pair in enumerate(chosen)}
    rows.sort(key=lambda r: order[(r["release"], r["service"])])
    findings.sort(key=lambda f: (order[(f.release, f.service)], STATUSES.index(f.status), f.advisory.date, f.advisory.id))
    return Report(tuple(findings), tuple(rows), database)


def render(result: Report, show_all: bool = False) -> str:
    """The table of what needs attention (and what the images fix), the count per image, and what to do."""
    listed = [f for f in result.findings if show_all or f.status != NOT_AFFECTED]
    parts = []
    if listed:
        parts.append(console.table(
            ["release", "service", "advisory", "CVE", "package", "version", "status", "evidence"],
            [(f.release, f.service, f.advisory.id, ", ".join(f.advisory.cves) or "-", f.package, f.version, f.status,
              f.evidence) for f in listed]))
    assessed = [r for r in result.images if r["assessed"]]
    if assessed:
        parts.append(console.table(["release", "service", "image", *STATUSES],
                                   [(r["release"], r["service"], r["image"], *(r["counts"][s] for s in STATUSES))
                                    for r in assessed]))
    steps = []
    for f in result.affected:
        what = f"{f.advisory.id} ({f.package} {f.version}, {f.release} {f.service}): "
        if f.component:
            numbers = f.advisory.review_numbers(f.component, f.release)
            what += f"invoke patches.candidates --release {f.release} --component {f.component}" + "".join(
                f"; or invoke patches.import --release {f.release} --component {f.component} --change {n}" for n in numbers)
        elif f.fixed.startswith("fixed"):
            what += f"{f.fixed}: pin a fixed version in overrides/{f.release}/constraints.txt"
        else:
            what += "no fixed version is named: judge whether the image is exposed (its VEX says in_triage)"
        steps.append(f"  {what}")
    if steps:
        parts.append("to fix:\n" + "\n".join(dict.fromkeys(steps)))
    return "\n\n".join(parts) if parts else "no built image to assess"


def as_report(result: Report, show_all: bool = False) -> console.Report:
    """What ``invoke advisories`` prints."""
    return console.Report(result.to_dict(), [render(result, show_all)])
