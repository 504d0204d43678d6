"""CVE query: where a CVE is fixed, in the configuration and in the built images.

Owns ``invoke cve``: the configured releases that carry a patch resolving the
CVE (the CVEs a patch names in its subject or message, as its provenance
records them), the constraint overrides whose recorded reason names it, the
built images that contain such a patch or override (their build records,
``<workdir>/<R>/<S>/image.json``: what was built, not what is configured
now), and the configured releases that have a patched component at all but
no patch for the CVE.  It reads only the repository and the work directory.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.constraints.overrides import parse_overrides
from pipeline.core import console
from pipeline.core.errors import UsageError
from pipeline.core.releases import Project
from pipeline.image import record as image_record
from pipeline.patches.patchfile import read_patch
from pipeline.patches.provenance import provenance
from pipeline.patches.series import all_series, discover


def _normalise(cve: str) -> str:
    value = cve.strip().upper()
    if not re.fullmatch(r"CVE-\d{4}-\d{4,}", value):
        raise UsageError(f"{cve!r} is not a CVE identifier", hint="write it like CVE-2026-44394")
    return value


def query(project: Project, cve: str) -> dict[str, Any]:
    cve = _normalise(cve)
    layout = project.layout
    patches = []
    for release, component in all_series(project):
        for path in discover(layout.series_dir(component, release))[0]:
            meta = read_patch(project, path)
            if cve in provenance(meta).cves:
                patches.append({"release": release, "component": component, "patch": layout.repo_rel(path),
                                "subject": meta.subject})
    overrides = []
    for release in project.releases:
        path = layout.overrides_file(release)
        if path.exists():
            for item in parse_overrides(path.read_text(), layout.repo_rel(path)):
                if item.reason and cve in item.reason.upper():
                    overrides.append({"release": release, "package": item.spelled, "override": item.text or f"-{item.spelled}",
                                      "file": f"{layout.repo_rel(path)}:{item.line_no}"})
    images = []
    for release, rel in project.releases.items():
        for service in rel.services:
            record = image_record.read(layout.image_record(release, service))
            if record is None:
                continue
            image = {"release": release, "service": service, "image": record.immutable_tag, "image_id": record.image_id}
            for patch in record.patches:
                if cve in patch.get("cves", ()):
                    images.append({**image, "component": patch["component"], "fix": patch["file"]})
            for change in record.constraints.get("changes", ()):
                if cve in (change.get("reason") or "").upper():
                    fix = f"{change['source']}: {', '.join(change['new']) or 'removed'}"
                    images.append({**image, "component": change["name"], "fix": fix})
    components = sorted({p["component"] for p in patches})
    missing = [{"release": release, "component": component, "ref": rel.refs[component]}
               for release, rel in project.releases.items() for component in components
               if component in rel.refs and not any(p["release"] == release and p["component"] == component
                                                     for p in patches)]
    return {"cve": cve, "patches": patches, "overrides": overrides, "images": images, "missing": missing}


def render(report: dict[str, Any]) -> str:
    cve = report["cve"]
    parts = []
    if report["patches"]:
        parts.append(f"patches resolving {cve}:\n" + console.table(
            ["release", "component", "patch"], [(p["release"], p["component"], p["patch"]) for p in report["patches"]]))
    if report["overrides"]:
        parts.append(f"constraint overrides for {cve}:\n" + console.table(
            ["release", "package", "override", "file"],
            [(o["release"], o["package"], o["override"], o["file"]) for o in report["overrides"]]))
    if not parts:
        parts.append(f"no configured release carries a patch or override for {cve}")
    parts.append("built images containing the fix:\n" + console.table(
        ["release", "service", "image", "fix"], [(i["release"], i["service"], i["image"], i["fix"])
                                                 for i in report["images"]])
                 if report["images"] else "no built image (build/<release>/<service>/image.json) contains a fix for it")
    if report["missing"]:
        parts.append("releases with the component but no patch for it (their ref may already contain the fix: "
                     "invoke patches.upstreamed):\n" + console.table(
                         ["release", "component", "ref"],
                         [(m["release"], m["component"], m["ref"]) for m in report["missing"]]))
    return "\n\n".join(parts)


def as_report(report: dict[str, Any]) -> console.Report:
    """What ``invoke cve`` prints."""
    return console.Report(report, [render(report)])
