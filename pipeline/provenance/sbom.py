"""SBOM stage: a CycloneDX 1.6 SBOM per image, with the patches as pedigree.

Owns ``<workdir>/<release>/<service>/sbom.cdx.json`` and its record
``sbom.json``: what is installed in the built image (Python distributions of
the venv and Debian packages, read by running the image itself), which
layer holds each distribution, the pedigree of every component built from
patched source (upstream ancestor, each patch with its diff, type and the
bugs and CVEs it resolves), constraint changes as properties, and
reproducibility (serial number and timestamp derived from the inputs).
Everything about the build comes from ``image.json``: this stage re-reads no
patch file, source record or setting.  cyclonedx is imported only here.
"""

from __future__ import annotations

import datetime
import importlib.util
import sys
import threading
import types
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pipeline import __version__
from pipeline.core import console
from pipeline.core.errors import SbomError
from pipeline.core.files import (
    sha256_bytes,
    write_atomic,
)
from pipeline.core.redact import public_url
from pipeline.core.releases import Project
from pipeline.image import record as image_record
from pipeline.image.record import DocumentRecord, ImageRecord
from pipeline.provenance.inventory import Inventory, check_libraries, read_inventory

if TYPE_CHECKING:  # imported when a document is made (start-up imports neither)
    from cyclonedx.model.bom import Bom
    from docker import APIClient

PROPERTY_NS = "openstack-patches"


def _defer_iri_grammar() -> None:
    """Have jsonschema import a stand-in for rfc3987-syntax that loads the real one on its first use.

    rfc3987-syntax builds some thirty Earley parsers when imported: 1.4 s of
    CPU, taken from the image builds that run meanwhile on a 2-core host.
    The IRI references of our SBOMs are ASCII and are checked with the URI
    grammar (``_ascii_iri_references_as_uri_references``), so the parsers are
    only loaded when a non-ASCII one is checked.
    """
    if "rfc3987_syntax" in sys.modules or "jsonschema" in sys.modules:
        return
    spec = importlib.util.find_spec("rfc3987_syntax")
    if spec is None or spec.submodule_search_locations is None:
        return
    stand_in = types.ModuleType("rfc3987_syntax")
    stand_in.__path__ = list(spec.submodule_search_locations)  # its submodules are the real ones

    def is_valid_syntax(term: str, value: str) -> bool:
        from rfc3987_syntax.syntax_helpers import is_valid_syntax as parse

        return bool(parse(term, value))

    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]  # what jsonschema takes from it
    sys.modules["rfc3987_syntax"] = stand_in


def preload() -> threading.Thread:
    """Import cyclonedx in the background while images build: its model, writer and schema validator take 0.3 s."""
    _defer_iri_grammar()
    modules = ("cyclonedx.model.bom", "cyclonedx.model.component", "cyclonedx.output.json", "cyclonedx.validation.json")
    thread = threading.Thread(target=lambda: [__import__(m) for m in modules], daemon=True)
    thread.start()
    return thread


def _layer_of(record: ImageRecord) -> tuple[dict[str, str], dict[str, str]]:
    """Which layer installs each Python distribution and each Debian package the record names."""
    python: dict[str, str] = {}
    debian: dict[str, str] = {}
    for layer in record.layers:
        for pin in layer.get("packages", []):
            python[canonicalize_name(pin.split("==", 1)[0])] = layer["name"]
        for name in layer.get("debian", []):
            debian[name] = layer["name"]
    return python, debian


def build_bom(record: ImageRecord, inventory: Inventory) -> Bom:
    from cyclonedx.model import (
        AttachedText,
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import (
        Component,
        ComponentType,
        Diff,
        Patch,
        PatchClassification,
        Pedigree,
    )
    from cyclonedx.model.issue import IssueClassification, IssueType, IssueTypeSource
    from packageurl import PackageURL

    def prop(key: str, value: str) -> Property:
        return Property(name=f"{PROPERTY_NS}:{key}", value=value)

    def purl(name: str, version: str) -> PackageURL:
        return PackageURL(type="pypi", name=canonicalize_name(name), version=version)

    launchpad = IssueTypeSource(name="Launchpad", url=XsUri("https://launchpad.net"))
    nvd = IssueTypeSource(name="NVD", url=XsUri("https://nvd.nist.gov"))

    def resolves(patch: Mapping[str, Any]) -> list[IssueType]:
        issues = [IssueType(type=IssueClassification.DEFECT, id=number, name=f"Launchpad bug #{number}",
                            description=f"{key}: #{number}", source=launchpad,
                            references=[XsUri(f"https://bugs.launchpad.net/bugs/{number}")])
                  for key, number in patch["bugs"]]
        issues += [IssueType(type=IssueClassification.SECURITY, id=cve, name=cve, source=nvd,
                             references=[XsUri(f"https://nvd.nist.gov/vuln/detail/{cve}")]) for cve in patch["cves"]]
        return issues

    def pedigree(component: str) -> Pedigree:
        source = record.sources[component]
        refs = [ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(public_url(source["repository"])),
                                  comment=f"ref {source['ref']}, revision {source['upstream_revision']}")]
        if source["method"] == "sdist":
            refs.append(ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(public_url(source["origin"])),
                                          hashes=[HashType(alg=HashAlgorithm.SHA_256, content=source["sdist_sha256"])]))
        version = source["version"]
        ancestor = Component(
            type=ComponentType.LIBRARY, name=component, version=version, bom_ref=f"upstream:{component}@{version}",
            purl=purl(component, version), external_references=refs,
            properties=[prop("upstream-ref", source["ref"]), prop("upstream-revision", source["upstream_revision"] or ""),
                        prop("source-method", source["method"])],
        )
        patches = [Patch(type=PatchClassification(p["patch_type"]),
                         diff=Diff(text=AttachedText(content=p["text"], content_type="text/x-diff"), url=XsUri(p["file"])),
                         resolves=resolves(p))
                   for p in record.patches if p["component"] == component]
        return Pedigree(ancestors=[ancestor], patches=patches,
                        notes=f"built from {component} {version} with {len(patches)} patch(es) from this repository")

    component_of = {dist: component for component, dist in record.dist_names.items()}
    changes = {c["name"]: c for c in record.constraints["changes"]}
    layers, deb_layers = _layer_of(record)
    runtime = record.runtime
    declared_python = {name: entry["declared"] for name, entry in runtime.get("python", {}).items()}
    declared_debian = runtime.get("debian", {})
    installed: dict[str, Any] = {}
    for dist in sorted(inventory.dists, key=lambda d: canonicalize_name(d["name"])):
        key = canonicalize_name(dist["name"])
        props = []
        component = component_of.get(key)
        ped = None
        if component is not None:
            ped = pedigree(component)
            props.append(prop("built-from", "patched source"))
        if key in layers:
            props.append(prop("layer", layers[key]))
        if key in declared_python:
            props.append(prop("runtime", f"declared in {declared_python[key]}"))
        change = changes.get(key)
        if change is not None:
            props += [prop("constraint:upstream", ", ".join(change["old"]) or "(absent)"),
                      prop("constraint:effective", ", ".join(change["new"]) or "(removed)"),
                      prop("constraint:why", change["why"])]
            if change.get("source"):
                props.append(prop("constraint:source", change["source"]))
            if change.get("reason"):
                props.append(prop("constraint:reason", change["reason"]))
        p = purl(dist["name"], dist["version"])
        installed[key] = Component(type=ComponentType.LIBRARY, name=dist["name"], version=dist["version"],
                                   bom_ref=p.to_string(), purl=p, pedigree=ped, properties=props)

    def deb_properties(name: str) -> list[Property]:
        props = [prop("layer", deb_layers[name])] if name in deb_layers else []
        return props + ([prop("runtime", f"asked for by {declared_debian[name]}")] if name in declared_debian else [])

    debs = [Component(type=ComponentType.LIBRARY, name=name, version=version,
                      bom_ref=f"pkg:deb/debian/{name}@{version}?arch={arch}",
                      purl=PackageURL(type="deb", namespace="debian", name=name, version=version, qualifiers={"arch": arch}),
                      properties=deb_properties(name))
            for name, version, arch in inventory.debs]

    name, _, tag = record.tags[0].rpartition(":")
    image_id = record.image_id
    image = Component(
        type=ComponentType.CONTAINER, name=name, version=tag, bom_ref=f"image:{name}:{tag}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=image_id.split(":", 1)[1])],
        purl=PackageURL(type="oci", name=name.rsplit("/", 1)[-1], version=image_id,
                        qualifiers={"tag": tag, "repository_url": name}),
        properties=[prop("release", record.release), prop("image-id", image_id), prop("input-hash", record.input_hash),
                    *[prop(f"label:{k}", v) for k, v in sorted(record.labels.items())],
                    *[prop(f"layer:{layer['name']}", str(len(layer.get("packages", [])) + len(layer.get("debian", []))))
                      for layer in record.layers]],
    )
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"openstack-patches:{image_id}:{record.input_hash}")
    bom = Bom(serial_number=serial, components=[*installed.values(), *debs])
    bom.metadata.component = image
    bom.metadata.timestamp = datetime.datetime.fromtimestamp(record.head_date, tz=datetime.UTC)
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="openstack-patches", version=__version__))
    top = installed.get(record.dist_names[record.service])
    if top is None:
        raise SbomError(f"{record.service} is not installed in image {image_id[:19]}",
                        hint=f"rebuild it: invoke build --release {record.release} --service {record.service} --force")
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


def _ascii_iri_references_as_uri_references() -> None:
    """Check an ASCII ``iri-reference`` with the URI grammar first: a regex instead of a parser.

    RFC 3987 only adds non-ASCII characters (ucschar, iprivate) to RFC 3986's
    grammar, so an ASCII string is an IRI reference exactly when it is a URI
    reference.  jsonschema checks IRIs with an Earley parser (rfc3987-syntax):
    about 0.6 s of the 0.7 s it takes to validate one image's SBOM, whose
    external references are all ASCII URLs.  What the URI check refuses still
    goes to the parser, so nothing the parser accepted is refused now (and a URL with
    an IPv6 literal and a port, which rfc3987-syntax 1.1 refuses, is accepted).
    """
    from jsonschema import Draft7Validator  # the checker cyclonedx's validators use

    checkers = Draft7Validator.FORMAT_CHECKER.checkers
    if "uri-reference" not in checkers or "iri-reference" not in checkers or hasattr(checkers["iri-reference"][0], "parser"):
        return
    (iri, iri_raises), (uri, uri_raises) = checkers["iri-reference"], checkers["uri-reference"]

    def iri_reference(instance: object) -> bool:
        if isinstance(instance, str) and instance.isascii():
            try:
                if uri(instance):
                    return True
            except uri_raises:
                pass
        return bool(iri(instance))

    # What it falls back to, and the mark that it is installed: an attribute of the function, on purpose.
    iri_reference.parser = iri  # type: ignore[attr-defined]
    checkers["iri-reference"] = (iri_reference, iri_raises)


def render(bom: Bom) -> str:
    _defer_iri_grammar()
    from cyclonedx.output.json import JsonV1Dot6
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    _ascii_iri_references_as_uri_references()
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise SbomError(f"the generated document is not valid CycloneDX 1.6: {error}")
    return text + "\n"


def generate(project: Project, release: str, service: str, client: APIClient | None = None) -> tuple[Path, str, str]:
    """Write the SBOM of a built image; return (path, sha256, what was done)."""
    layout = project.layout
    record = image_record.load(project, release, service)
    out, own = layout.sbom_file(release, service), layout.sbom_record(release, service)
    existing = DocumentRecord.current(own, record, out)
    if existing:
        return out, existing.sha256, "up to date"
    if client is None:
        from pipeline.image.engine import connect

        client = connect(project.settings)
    for path in (out, own):
        path.unlink(missing_ok=True)
    with console.step(f"sbom {service} ({release})"):
        inventory = read_inventory(client, record.image_id)
        check_libraries(record, inventory)
        text = render(build_bom(record, inventory))
    write_atomic(out, text)
    digest = sha256_bytes(text.encode())
    DocumentRecord(record.image_id, record.input_hash, digest, layout.rel(out)).write(own)
    return out, digest, "written"
