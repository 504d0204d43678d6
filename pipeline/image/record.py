"""The records of an image: ``image.json`` and what later stages derive from it, typed and written once.

Owns ``ImageRecord`` (``<workdir>/<R>/<S>/image.json``: what a service image
holds and how it was made, with its schema version), written once after a
successful build and read back here only: a record of another schema, or none,
is refused with the build to run.  Also the records the later stages write
beside it, each current only while it describes the record's image:
``DocumentRecord`` (``sbom.json``, ``vex.json``: a document and its hash) and
``PushRecord`` (``push.json``: the registry digests).  sbom, vex, push and
manifest read images through this module, never through each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeline.core.errors import ImageRecordError
from pipeline.core.files import read_json, sha256_file, write_json
from pipeline.core.releases import Project

FORMAT = 7  # bump when a field changes meaning or is added: an older record is then refused, and built again


def _frozen(value: Any) -> Any:
    """JSON data as read-only mappings and tuples (a record does not change once written)."""
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


@dataclass(frozen=True)
class ImageRecord:
    """What a service image holds and how it was made; ``image_id`` is empty until it is built."""

    service: str
    release: str
    image: str  # the repository: <prefix>/<service>
    tags: tuple[str, ...]  # immutable, moving
    labels: Mapping[str, str]
    input_hash: str
    version: str  # the service's upstream version
    head: str  # the prepared tree's head commit
    head_date: int  # its committer date (seconds): the SBOM's reproducible timestamp
    tree: str  # the prepared tree, relative to the work directory
    sources: Mapping[str, Mapping[str, Any]]  # component -> its source record (sources.json)
    heads: Mapping[str, str]  # component -> its prepared tree's head
    wheels: Mapping[str, Mapping[str, Any]]  # component -> the wheel of its patched tree
    tree_layers: Mapping[str, Mapping[str, Any]]  # component -> its layer archive (sha256, diff ID, byte code)
    dist_names: Mapping[str, str]  # component -> canonical distribution name
    patches: tuple[Mapping[str, Any], ...]  # every patch of the image, with its text, hash and provenance
    libraries: Mapping[str, Mapping[str, Any]]  # patched library -> version, head, patch count
    layers: tuple[Mapping[str, Any], ...]  # the image's layers: name, packages (and Debian packages, image)
    bases: Mapping[str, str]  # base images and the release layer it starts from
    constraints: Mapping[str, Any]  # the effective constraints' record
    target: Mapping[str, Any]  # Python version, architecture, glibc
    runtime: Mapping[str, Any]  # what runtime.yaml gave the image: Python and Debian packages, processes
    build_log: str
    tool: str
    image_id: str = ""
    format: int = FORMAT

    @property
    def immutable_tag(self) -> str:
        return self.tags[0]

    @property
    def moving_tag(self) -> str:
        return self.tags[1]

    def built(self, image_id: str, tree_diff_ids: Mapping[str, str]) -> ImageRecord:
        """The record of the built image: its ID, and each tree layer's diff ID as the engine has it."""
        layers = {c: {**entry, "diff_id": tree_diff_ids[c]} for c, entry in self.tree_layers.items()}
        return dataclasses.replace(self, image_id=image_id, tree_layers=_frozen(layers))

    def to_json(self) -> dict[str, Any]:
        return {field.name: _thawed(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageRecord:
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{k: _frozen(v) for k, v in data.items() if k in names})

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())


def read(path: Path) -> ImageRecord | None:
    """The record at ``path`` if it is a built image's of this schema (else None: build it, or again)."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not data.get("image_id"):
        return None
    try:
        return ImageRecord.from_json(data)
    except TypeError:  # a field missing: a record this tool did not write
        return None


def load(project: Project, release: str, service: str) -> ImageRecord:
    """The built image's record, or an error saying what to build (an unknown service is that, first)."""
    project.services(release, [service])
    path = project.layout.image_record(release, service)
    data = read_json(path)
    if isinstance(data, dict) and data.get("image_id") and data.get("format") != FORMAT:
        raise ImageRecordError(f"{service} ({release}): {project.layout.rel(path)} is a record of schema "
                               f"{data.get('format')}, this tool reads {FORMAT}",
                               hint=f"build it again: invoke build --release {release} --service {service}")
    record = read(path)
    if record is None:
        raise ImageRecordError(f"{service} ({release}) has no build record at {project.layout.rel(path)}",
                               hint=f"build it first: invoke build --release {release} --service {service}")
    return record


@dataclass(frozen=True)
class DocumentRecord:
    """``sbom.json`` / ``vex.json``: the document a stage wrote for an image, and its hash."""

    image_id: str
    input_hash: str
    sha256: str
    path: str  # relative to the work directory
    advisories: str | None = None  # vex.json: the hash of the advisories' findings it states (None: none read)
    ids: tuple[str, ...] = ()  # vex.json: the vulnerabilities it states

    def write(self, path: Path) -> None:
        write_json(path, {**dataclasses.asdict(self), "ids": list(self.ids)})

    @classmethod
    def current(cls, path: Path, record: ImageRecord, document: Path) -> DocumentRecord | None:
        """The record at ``path`` if it describes ``record``'s image and its document is intact."""
        data = read_json(path)
        if not isinstance(data, dict) or data.get("image_id") != record.image_id \
                or data.get("input_hash") != record.input_hash or not document.exists():
            return None
        try:
            found = cls(data["image_id"], data["input_hash"], data["sha256"], data["path"], data.get("advisories"),
                        tuple(data.get("ids") or ()))
        except KeyError:
            return None
        return found if sha256_file(document) == found.sha256 else None


@dataclass(frozen=True)
class PushRecord:
    """``push.json``: where the image's tags were pushed, and their digests."""

    image_id: str
    input_hash: str
    registry: str  # as shown: no user-info
    digests: Mapping[str, str]  # registry reference -> digest

    def write(self, path: Path) -> None:
        write_json(path, {**dataclasses.asdict(self), "digests": dict(self.digests)})

    @classmethod
    def current(cls, path: Path, record: ImageRecord) -> PushRecord | None:
        data = read_json(path)
        if not isinstance(data, dict) or data.get("image_id") != record.image_id:
            return None
        return cls(data["image_id"], data.get("input_hash", ""), data.get("registry", ""),
                   MappingProxyType(dict(data.get("digests") or {})))
