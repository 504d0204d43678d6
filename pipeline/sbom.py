"""SBOM stage: a CycloneDX 1.6 SBOM per image, with the patches as pedigree.

Owns ``<workdir>/<release>/<service>/sbom.cdx.json``: what is installed in
the built image (Python distributions of the venv and Debian packages of the
runtime base, read from the image itself), the pedigree of every component
built from patched source (upstream ancestor, each patch with its diff, type
and the bugs and CVEs it resolves), constraint overrides as properties, and
reproducibility (serial number and timestamp derived from the inputs).
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclonedx.model import AttachedText, ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType, Diff, Patch, PatchClassification, Pedigree
from cyclonedx.model.issue import IssueClassification, IssueType, IssueTypeSource
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from . import constraints as constraints_stage
from . import images
from .config import Project
from .errors import SbomError
from .git import git
from .patches import parse_patch
from .sources import load_sources
from .stamps import Stamp, hash_inputs, read_json, sha256_bytes, write_atomic, write_json

PROPERTY_NS = "openstack-patches"
TRAILER_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s*(.+?)\s*$")
CVE_RE = re.compile(r"\bCVE-\d{4}-\d{4,}\b")
CHERRY_PICK_RE = re.compile(r"\(cherry picked from commit ([0-9a-f]{7,40})\)")
BUG_TRAILERS = ("Closes-Bug", "Partial-Bug", "Related-Bug")
PATCH_TYPES = {t.value: t for t in PatchClassification}

# Runs inside the image with its own Python: installed distributions and the
# marker environment needed to resolve their dependencies on the host.
INVENTORY_SCRIPT = r"""
import importlib.metadata as m, json, os, platform, sys
def ver(info):
    v = "{0.major}.{0.minor}.{0.micro}".format(info)
    return v + (info.releaselevel[0] + str(info.serial) if info.releaselevel != "final" else "")
env = {
    "implementation_name": sys.implementation.name,
    "implementation_version": ver(sys.implementation.version),
    "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}
dists = [{"name": d.metadata["Name"], "version": d.version, "requires": d.requires or [],
          "license": d.metadata.get("License-Expression") or d.metadata.get("License") or ""}
         for d in m.distributions()]
print(json.dumps({"env": env, "dists": dists}))
"""


# --- patch metadata (pure) -----------------------------------------------------------


def trailers(message: str) -> list[tuple[str, str]]:
    """``Key: value`` trailers of the last paragraph of a commit message."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if not paragraphs:
        return []
    found = []
    for line in paragraphs[-1].splitlines():
        m = TRAILER_RE.match(line.strip())
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def patch_type(message: str) -> PatchClassification:
    """backport if the patch names an upstream commit or Change-Id; an explicit ``Patch-Type:`` wins."""
    keys = {k.lower(): v for k, v in trailers(message)}
    explicit = keys.get("patch-type", "").strip().lower()
    if explicit in PATCH_TYPES:
        return PATCH_TYPES[explicit]
    if CHERRY_PICK_RE.search(message) or "change-id" in keys:
        return PatchClassification.BACKPORT
    return PatchClassification.UNOFFICIAL


def resolved_issues(subject: str, message: str) -> list[IssueType]:
    """Launchpad bugs from ``*-Bug:`` trailers and CVE identifiers from subject or body."""
    issues: list[IssueType] = []
    launchpad = IssueTypeSource(name="Launchpad", url=XsUri("https://launchpad.net"))
    seen: set[str] = set()
    for key, value in trailers(message):
        if key not in BUG_TRAILERS:
            continue
        for number in re.findall(r"#?(\d+)", value):
            if number in seen:
                continue
            seen.add(number)
            issues.append(IssueType(
                type=IssueClassification.DEFECT, id=number, name=f"Launchpad bug #{number}",
                description=f"{key}: #{number}", source=launchpad,
                references=[XsUri(f"https://bugs.launchpad.net/bugs/{number}")],
            ))
    nvd = IssueTypeSource(name="NVD", url=XsUri("https://nvd.nist.gov"))
    for cve in dict.fromkeys(CVE_RE.findall(f"{subject}\n{message}")):
        issues.append(IssueType(type=IssueClassification.SECURITY, id=cve, name=cve, source=nvd,
                                references=[XsUri(f"https://nvd.nist.gov/vuln/detail/{cve}")]))
    return issues


# --- reading the image -----------------------------------------------------------------


@dataclass(frozen=True)
class Inventory:
    env: dict[str, str]
    dists: list[dict[str, Any]]
    debs: list[tuple[str, str, str]]  # name, version, architecture


def read_inventory(image_id: str) -> Inventory:
    """What is installed in the image, read by running it (no guessing from build inputs)."""
    import docker

    images.connect()
    client = docker.from_env()
    try:
        py = client.containers.run(image_id, ["python", "-c", INVENTORY_SCRIPT], remove=True)
        debs = client.containers.run(image_id, ["dpkg-query", "-W", "-f=${Package}\t${Version}\t${Architecture}\n"], remove=True)
    except docker.errors.ContainerError as exc:
        raise SbomError(f"cannot list the contents of image {image_id[:19]}: {exc}",
                        hint="the image must have python on PATH and dpkg-query") from None
    data = json.loads(py)
    rows = [tuple(line.split("\t")) for line in debs.decode().splitlines() if line.count("\t") == 2]
    return Inventory(data["env"], data["dists"], sorted(rows))


# --- the document ----------------------------------------------------------------------


def _purl(name: str, version: str) -> PackageURL:
    return PackageURL(type="pypi", name=canonicalize_name(name), version=version)


def _prop(key: str, value: str) -> Property:
    return Property(name=f"{PROPERTY_NS}:{key}", value=value)


def sbom_path(project: Project, release: str, service: str) -> Path:
    return images.image_dir(project, release, service) / "sbom.cdx.json"


def _pedigree(project: Project, release: str, component: str, record: dict, source: Any) -> Pedigree:
    git_url = project.settings.git_url(component)
    refs = [ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(git_url),
                              comment=f"ref {source.ref}, revision {source.upstream_revision}")]
    if source.method == "sdist":
        refs.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(source.origin),
                                      hashes=[HashType(alg=HashAlgorithm.SHA_256, content=source.sdist_sha256)]))
    version = source.version or record.get("version") or ""
    ancestor = Component(
        type=ComponentType.LIBRARY, name=project.settings.pypi_name(component), version=version,
        bom_ref=f"upstream:{component}@{version}", purl=_purl(project.settings.pypi_name(component), version),
        external_references=refs,
        properties=[_prop("upstream-ref", source.ref), _prop("upstream-revision", source.upstream_revision or "")],
    )
    patch_entries = []
    for applied in [p for p in record["patches"] if p["component"] == component]:
        path = project.settings.root / applied["file"]
        if not path.exists() or sha256_bytes(path.read_bytes()) != applied["sha256"]:
            raise SbomError(
                f"{applied['file']} changed or disappeared since the image was built",
                hint=f"rebuild first: invoke build --release {release} --service {record['service']}",
            )
        text = path.read_text(encoding="utf-8", errors="replace")
        meta = parse_patch(text, path.name)
        message = meta.message
        patch_entries.append(Patch(
            type=patch_type(message),
            diff=Diff(text=AttachedText(content=text, content_type="text/x-diff"), url=XsUri(applied["file"])),
            resolves=resolved_issues(meta.subject, message),
        ))
    return Pedigree(ancestors=[ancestor], patches=patch_entries,
                    notes=f"built from {component} {version} with {len(patch_entries)} patch(es) from this repository")


def build_bom(project: Project, release: str, record: dict, inventory: Inventory) -> Bom:
    service = record["service"]
    sources = load_sources(project, release)
    content, merge = constraints_stage.effective(project, release)
    if sha256_bytes(content.encode()) != record["constraints"]["sha256"]:
        raise SbomError(
            f"the effective constraints of {release} changed since {service} was built",
            hint=f"rebuild first: invoke build --release {release} --service {service}",
        )
    changes = {c.name: c for c in merge.changes}
    override_file = str(constraints_stage.overrides_path(project, release).relative_to(project.settings.root))
    patched = {canonicalize_name(project.settings.pypi_name(c)): c for c in [service, *record["libraries"]]}

    installed: dict[str, Component] = {}
    for dist in sorted(inventory.dists, key=lambda d: canonicalize_name(d["name"])):
        key = canonicalize_name(dist["name"])
        props = []
        pedigree = None
        if key in patched:
            component = patched[key]
            if component not in sources:
                raise SbomError(f"{component}: missing from {project.settings.workdir / release / 'sources.json'}",
                                hint=f"rerun invoke build --release {release} --service {service}")
            pedigree = _pedigree(project, release, component, record, sources[component])
            props.append(_prop("built-from", "patched source"))
        change = changes.get(key)
        if change is not None:
            props += [_prop("constraint:upstream", ", ".join(change.old) or "(absent)"),
                      _prop("constraint:effective", ", ".join(change.new) or "(removed)"),
                      _prop("constraint:why", change.why)]
            if change.why.startswith("override"):
                props.append(_prop("constraint:source", f"{override_file} ({change.why})"))
            if change.reason:
                props.append(_prop("constraint:reason", change.reason))
        purl = _purl(dist["name"], dist["version"])
        installed[key] = Component(
            type=ComponentType.LIBRARY, name=dist["name"], version=dist["version"], bom_ref=purl.to_string(),
            purl=purl, pedigree=pedigree, properties=props,
        )

    debs = [Component(type=ComponentType.LIBRARY, name=name, version=version,
                      bom_ref=f"pkg:deb/debian/{name}@{version}?arch={arch}",
                      purl=PackageURL(type="deb", namespace="debian", name=name, version=version, qualifiers={"arch": arch}))
            for name, version, arch in inventory.debs]

    name, _, tag = record["tags"][0].rpartition(":")
    image_digest = record["image_id"]
    image = Component(
        type=ComponentType.CONTAINER, name=name, version=tag, bom_ref=f"image:{name}:{tag}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=image_digest.split(":", 1)[1])],
        purl=PackageURL(type="oci", name=name.rsplit("/", 1)[-1], version=image_digest,
                        qualifiers={"tag": tag, "repository_url": name}),
        properties=[_prop("release", release), _prop("image-id", image_digest), _prop("input-hash", record["input_hash"]),
                    *[_prop(f"label:{k}", v) for k, v in sorted(record["labels"].items())]],
    )
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"openstack-patches:{image_digest}:{record['input_hash']}")
    committed = int(git("log", "-1", "--format=%ct", record["head"], cwd=Path(record["tree"])).strip())
    bom = Bom(serial_number=serial, components=[*installed.values(), *debs])
    bom.metadata.component = image
    bom.metadata.timestamp = datetime.datetime.fromtimestamp(committed, tz=datetime.timezone.utc)
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="openstack-patches", version="0.1.0"))

    top = installed[canonicalize_name(project.settings.pypi_name(service))]
    bom.register_dependency(image, [top])
    for dist in inventory.dists:
        deps = []
        for spec in dist["requires"]:
            try:
                req = Requirement(spec)
                if req.marker is not None and not req.marker.evaluate({**inventory.env, "extra": ""}):
                    continue
            except (InvalidRequirement, InvalidMarker):
                continue
            target = installed.get(canonicalize_name(req.name))
            if target is not None:
                deps.append(target)
        bom.register_dependency(installed[canonicalize_name(dist["name"])], deps)
    return bom


def render(bom: Bom) -> str:
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise SbomError(f"the generated SBOM is not valid CycloneDX 1.6: {error}")
    return text + "\n"


def generate(project: Project, release: str, service: str) -> tuple[Path, str, str]:
    """Write the SBOM of a built image; return (path, sha256, what was done)."""
    record_path = images.image_dir(project, release, service) / "image.json"
    record = read_json(record_path)
    if not record:
        raise SbomError(f"{service} ({release}) has no build record at {record_path}",
                        hint=f"build it first: invoke build --release {release} --service {service}")
    out = sbom_path(project, release, service)
    patch_files = [(p["file"], sha256_bytes((project.settings.root / p["file"]).read_bytes())
                    if (project.settings.root / p["file"]).exists() else None) for p in record["patches"]]
    overrides = constraints_stage.overrides_path(project, release)
    built = {k: v for k, v in record.items() if k not in ("sbom", "pushed")}  # what this stage adds itself
    inputs = {"record": built, "patches": patch_files, "version": 1,
              "overrides": overrides.read_text() if overrides.exists() else ""}
    stamp = Stamp(project.settings.workdir / ".stamps" / "sbom" / release / f"{service}.json")
    cached = stamp.current(hash_inputs(inputs))
    if cached and out.exists() and sha256_bytes(out.read_bytes()) == cached["sha256"]:
        return out, cached["sha256"], "up to date"
    text = render(build_bom(project, release, record, read_inventory(record["image_id"])))
    write_atomic(out, text)
    digest = sha256_bytes(text.encode())
    record["sbom"] = {"path": str(out), "sha256": digest}
    write_json(record_path, record)
    stamp.record(hash_inputs(inputs), {"sha256": digest})
    return out, digest, "written"
