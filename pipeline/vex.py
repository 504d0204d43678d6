"""VEX stage: a CycloneDX 1.6 VEX document per image for the CVEs its patches resolve.

Owns ``<workdir>/<release>/<service>/vex.cdx.json`` and its record
``vex.json``: for every CVE that a patch in the image names (the image
record's provenance of each patch), one vulnerability affecting the patched
component at its version, ``analysis.state: resolved_with_pedigree``, the
patch file named in ``detail``, and the image as the product.  Components
are referenced by BOM-Link into the image's SBOM (``urn:cdx:<serial>/1#<ref>``),
as scanners (Trivy ``--vex``) expect.  Reproducible bytes: serial number and
timestamp derive from the image record.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

from packaging.utils import canonicalize_name

from . import __version__
from .config import Project
from .errors import SbomError
from .files import read_json, sha256_bytes, write_atomic, write_json
from .sbom import current_record, load_image_record


def cve_fixes(record: dict) -> dict[str, list[dict]]:
    """CVE -> the patches of the image that resolve it."""
    fixes: dict[str, list[dict]] = {}
    for patch in record["patches"]:
        for cve in patch["cves"]:
            fixes.setdefault(cve, []).append(patch)
    return dict(sorted(fixes.items()))


def build_vex(record: dict, sbom_serial: str):
    from cyclonedx.model import XsUri
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.impact_analysis import ImpactAnalysisState
    from cyclonedx.model.vulnerability import (
        BomTarget,
        BomTargetVersionRange,
        ImpactAnalysisAffectedStatus,
        Vulnerability,
        VulnerabilityAnalysis,
        VulnerabilityReference,
        VulnerabilitySource,
    )
    from packageurl import PackageURL

    name, _, tag = record["tags"][0].rpartition(":")
    image = Component(type=ComponentType.CONTAINER, name=name, version=tag, bom_ref=f"image:{name}:{tag}",
                      purl=PackageURL(type="oci", name=name.rsplit("/", 1)[-1], version=record["image_id"],
                                      qualifiers={"tag": tag, "repository_url": name}))
    nvd = VulnerabilitySource(name="NVD", url=XsUri("https://nvd.nist.gov"))
    when = datetime.datetime.fromtimestamp(record["head_date"], tz=datetime.timezone.utc)
    vulnerabilities = []
    for cve, patches in cve_fixes(record).items():
        targets = []
        for component in dict.fromkeys(p["component"] for p in patches):
            version = record["sources"][component]["version"]
            ref = PackageURL(type="pypi", name=record["dist_names"].get(component, canonicalize_name(component)),
                             version=version).to_string()
            targets.append(BomTarget(ref=f"urn:cdx:{sbom_serial}/1#{ref}",
                                     versions=[BomTargetVersionRange(version=version, status=ImpactAnalysisAffectedStatus.UNAFFECTED)]))
        detail = "; ".join(f"fixed in {p['component']} {record['sources'][p['component']]['version']} by the backported "
                           f"patch {p['file']} ({p['subject']})" for p in patches)
        vulnerabilities.append(Vulnerability(
            bom_ref=f"vex:{cve}", id=cve, source=nvd,
            references=[VulnerabilityReference(id=cve, source=VulnerabilitySource(
                name="NVD", url=XsUri(f"https://nvd.nist.gov/vuln/detail/{cve}")))],
            analysis=VulnerabilityAnalysis(state=ImpactAnalysisState.RESOLVED_WITH_PEDIGREE, detail=detail,
                                           first_issued=when, last_updated=when),
            affects=targets,
        ))
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"openstack-patches:vex:{record['image_id']}:{record['input_hash']}"),
              vulnerabilities=vulnerabilities)
    bom.metadata.component = image
    bom.metadata.timestamp = when
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="openstack-patches", version=__version__))
    return bom


def generate(project: Project, release: str, service: str) -> tuple[Path, str, str]:
    """Write the VEX document of a built image (after its SBOM); return (path, sha256, what was done)."""
    from .sbom import render

    layout = project.layout
    record = load_image_record(project, release, service)
    sbom_record = current_record(layout.sbom_record(release, service), record, layout.sbom_file(release, service))
    if sbom_record is None:
        raise SbomError(f"{service} ({release}) has no SBOM of its current image",
                        hint=f"run invoke sbom --release {release} --service {service} first")
    out, own = layout.vex_file(release, service), layout.vex_record(release, service)
    existing = current_record(own, record, out)
    if existing:
        return out, existing["sha256"], "up to date"
    for path in (out, own):
        path.unlink(missing_ok=True)
    serial = read_json(layout.sbom_file(release, service))["serialNumber"].removeprefix("urn:uuid:")
    text = render(build_vex(record, serial))
    write_atomic(out, text)
    digest = sha256_bytes(text.encode())
    write_json(own, {"image_id": record["image_id"], "input_hash": record["input_hash"], "sha256": digest,
                     "path": layout.rel(out), "cves": list(cve_fixes(record))})
    return out, digest, "written"
