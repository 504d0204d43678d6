"""VEX stage: a CycloneDX 1.6 VEX document per image: every advisory that touches it, and the CVEs its patches resolve.

Owns ``<workdir>/<release>/<service>/vex.cdx.json`` and its record
``vex.json``.  One vulnerability per identifier (the advisory's CVEs, else
its own id) with the state of ``invoke advisories`` (``assessment``):
``resolved_with_pedigree`` for a patch (named in ``detail``; the SBOM's
pedigree carries it), ``resolved`` for a constraint override,
``not_affected`` (``code_not_present``) outside the affected range, and
``in_triage`` for an affected version nothing fixes; a CVE that a patch
names but no advisory knows is ``resolved_with_pedigree`` too.  Components
are referenced by BOM-Link into the image's SBOM (``urn:cdx:<serial>/1#<ref>``),
as scanners (Trivy ``--vex``) expect.  Reproducible bytes: serial number and
timestamp derive from the image record; the record keeps a hash of the
findings, so new advisories rewrite the document and nothing else does.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from pipeline import __version__
from pipeline.core import console
from pipeline.core.errors import FetchError, SbomError
from pipeline.core.files import (
    hash_inputs,
    read_json,
    sha256_bytes,
    write_atomic,
)
from pipeline.core.releases import Project
from pipeline.image import record as image_record
from pipeline.image.record import DocumentRecord, ImageRecord

if TYPE_CHECKING:  # imported when a document is made (start-up imports neither)
    from cyclonedx.model.bom import Bom

    from pipeline.provenance.advisories import Advisory
    from pipeline.provenance.assessment import Finding


def cve_fixes(record: ImageRecord) -> dict[str, list[Mapping[str, Any]]]:
    """CVE -> the patches of the image that resolve it."""
    fixes: dict[str, list[Mapping[str, Any]]] = {}
    for patch in record.patches:
        for cve in patch["cves"]:
            fixes.setdefault(cve, []).append(patch)
    return dict(sorted(fixes.items()))


def build_vex(record: ImageRecord, sbom_serial: str, findings: list[Finding] | None = None) -> Bom:
    from cyclonedx.model import XsUri
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.impact_analysis import (
        ImpactAnalysisAffectedStatus,
        ImpactAnalysisJustification,
        ImpactAnalysisState,
    )
    from cyclonedx.model.vulnerability import (
        BomTarget,
        BomTargetVersionRange,
        Vulnerability,
        VulnerabilityAdvisory,
        VulnerabilityAnalysis,
        VulnerabilityReference,
        VulnerabilitySource,
    )
    from packageurl import PackageURL

    from pipeline.provenance.assessment import (
        AFFECTED,
        FIXED_BY_OVERRIDE,
        FIXED_BY_PATCH,
        STATUSES,
    )

    name, _, tag = record.tags[0].rpartition(":")
    image = Component(type=ComponentType.CONTAINER, name=name, version=tag, bom_ref=f"image:{name}:{tag}",
                      purl=PackageURL(type="oci", name=name.rsplit("/", 1)[-1], version=record.image_id,
                                      qualifiers={"tag": tag, "repository_url": name}))
    when = datetime.datetime.fromtimestamp(record.head_date, tz=datetime.UTC)
    sources = {"NVD": VulnerabilitySource(name="NVD", url=XsUri("https://nvd.nist.gov")),
               "ossa": VulnerabilitySource(name="OpenStack Vulnerability Management Team",
                                           url=XsUri("https://security.openstack.org")),
               "pypa_advisories": VulnerabilitySource(name="PyPA Advisory Database", url=XsUri("https://osv.dev"))}
    states = {AFFECTED: ImpactAnalysisState.IN_TRIAGE, FIXED_BY_PATCH: ImpactAnalysisState.RESOLVED_WITH_PEDIGREE,
              FIXED_BY_OVERRIDE: ImpactAnalysisState.RESOLVED}

    def target(package: str, version: str, affected: bool) -> BomTarget:
        ref = PackageURL(type="pypi", name=package, version=version).to_string()
        status = ImpactAnalysisAffectedStatus.AFFECTED if affected else ImpactAnalysisAffectedStatus.UNAFFECTED
        return BomTarget(ref=f"urn:cdx:{sbom_serial}/1#{ref}", versions=[BomTargetVersionRange(version=version, status=status)])

    def statement(vuln_id: str, source: VulnerabilitySource, detail: str, state: ImpactAnalysisState,
                  targets: list[BomTarget], advisory: Advisory | None = None,
                  justification: ImpactAnalysisJustification | None = None) -> Vulnerability:
        references = [VulnerabilityReference(id=vuln_id, source=VulnerabilitySource(
            name="NVD", url=XsUri(f"https://nvd.nist.gov/vuln/detail/{vuln_id}")))] if vuln_id.startswith("CVE-") else []
        if advisory is not None:
            references += [VulnerabilityReference(id=other, source=sources[advisory.source])
                           for other in (advisory.id, *advisory.aliases) if other != vuln_id]
        return Vulnerability(
            bom_ref=f"vex:{vuln_id}", id=vuln_id, source=source, references=references,
            description=advisory.title if advisory is not None else None,
            advisories=[VulnerabilityAdvisory(url=XsUri(advisory.url), title=advisory.id)] if advisory is not None else None,
            analysis=VulnerabilityAnalysis(state=state, justification=justification, detail=detail,
                                           first_issued=when, last_updated=when),
            affects=targets,
        )

    by_id: dict[str, list[Finding]] = {}
    for finding in findings or []:
        for vuln_id in finding.advisory.cves or (finding.advisory.id,):
            by_id.setdefault(vuln_id, []).append(finding)
    vulnerabilities = []
    for vuln_id, group in sorted(by_id.items()):
        worst = min(group, key=lambda f: STATUSES.index(f.status))
        state = states.get(worst.status, ImpactAnalysisState.NOT_AFFECTED)
        detail = "; ".join(f"{f.package} {f.version}: {f.status} ({f.advisory.id}): {f.evidence}" for f in group)
        vulnerabilities.append(statement(
            vuln_id, sources["NVD"] if vuln_id.startswith("CVE-") else sources[worst.advisory.source], detail, state,
            [target(f.package, f.version, f.status == AFFECTED) for f in group], worst.advisory,
            ImpactAnalysisJustification.CODE_NOT_PRESENT if state is ImpactAnalysisState.NOT_AFFECTED else None))
    for cve, patches in cve_fixes(record).items():
        if cve in by_id:
            continue
        targets = []
        for component in dict.fromkeys(p["component"] for p in patches):
            targets.append(target(record.dist_names.get(component, canonicalize_name(component)),
                                  record.sources[component]["version"], False))
        detail = "; ".join(f"fixed in {p['component']} {record.sources[p['component']]['version']} by the backported "
                           f"patch {p['file']} ({p['subject']})" for p in patches)
        vulnerabilities.append(statement(cve, sources["NVD"], detail, ImpactAnalysisState.RESOLVED_WITH_PEDIGREE, targets))
    vulnerabilities.sort(key=lambda v: v.id or "")  # every statement has its id
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"openstack-patches:vex:{record.image_id}:{record.input_hash}"),
              vulnerabilities=vulnerabilities)
    bom.metadata.component = image
    bom.metadata.timestamp = when
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="openstack-patches", version=__version__))
    return bom


def _findings(project: Project, release: str, service: str) -> list[Finding] | None:
    """The advisories' findings for the image, or None (with a warning) when no advisory source can be read."""
    from pipeline.provenance import advisory_database
    from pipeline.provenance.assessment import Image, assess, read_image

    try:
        database = advisory_database.load(project)
    except FetchError as error:
        console.warn_once(f"vex: no advisories read ({error.message}); each image's document keeps what they said "
                          "when last read, or a new one holds only the CVEs its patches resolve (invoke advisories "
                          "fetches them and writes it again)")
        return None
    image = read_image(project, release, service)
    assert isinstance(image, Image)  # the SBOM was checked before
    found = assess(image, database)
    database.save()
    return found


def generate(project: Project, release: str, service: str, findings: list[Finding] | None = None,
             ) -> tuple[Path, str, str]:
    """Write the VEX document of a built image (after its SBOM); return (path, sha256, what was done).

    ``findings`` are the image's assessment (``invoke advisories`` passes
    them); without them the configured advisory sources are read as cached,
    and where none can be read an existing document of the image is kept.
    """
    from pipeline.provenance.sbom import render

    layout = project.layout
    record = image_record.load(project, release, service)
    sbom_record = DocumentRecord.current(layout.sbom_record(release, service), record, layout.sbom_file(release, service))
    if sbom_record is None:
        raise SbomError(f"{service} ({release}) has no SBOM of its current image",
                        hint=f"run invoke sbom --release {release} --service {service} first")
    if findings is None:
        findings = _findings(project, release, service)
    assessed = hash_inputs([f.to_dict() for f in findings]) if findings is not None else None
    out, own = layout.vex_file(release, service), layout.vex_record(release, service)
    existing = DocumentRecord.current(own, record, out)
    # No advisory source to read now: the document of this image keeps what they said when last read.
    if existing and (existing.advisories == assessed or assessed is None):
        return out, existing.sha256, "up to date"
    for path in (out, own):
        path.unlink(missing_ok=True)
    serial = read_json(layout.sbom_file(release, service))["serialNumber"].removeprefix("urn:uuid:")
    bom = build_vex(record, serial, findings)
    text = render(bom)
    write_atomic(out, text)
    digest = sha256_bytes(text.encode())
    DocumentRecord(record.image_id, record.input_hash, digest, layout.rel(out), assessed,
                   tuple(v.id for v in bom.vulnerabilities)).write(own)
    return out, digest, "written"
