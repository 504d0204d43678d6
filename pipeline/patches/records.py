"""The records of a prepared series: each applied patch with its provenance, and the prepared tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.patches.patchfile import PatchMeta
from pipeline.patches.provenance import (
    provenance,
)
from pipeline.sources.fetch import SourceRecord


@dataclass(frozen=True)
class AppliedPatch:
    """One applied patch as every later stage needs it (no stage re-reads the file)."""

    component: str
    file: str  # path in the repository
    sha256: str  # of the file's exact bytes
    subject: str
    author: str
    date: str | None
    message: str
    source_format: str
    patch_type: str
    change_id: str | None
    cherry_picked_from: tuple[str, ...]
    bugs: tuple[tuple[str, str], ...]
    cves: tuple[str, ...]
    files: tuple[str, ...]  # paths the patch changes
    text: str  # the patch, decoded for display (the hash is of the bytes)
    commit: str | None = None  # in the prepared tree

    @property
    def committed(self) -> str:
        """``commit`` of a patch applied with ``commit=True`` (every stage but the dry-run check)."""
        assert self.commit is not None, f"{self.file} was applied without a commit"
        return self.commit

    @classmethod
    def make(cls, component: str, file: str, meta: PatchMeta, commit: str | None) -> AppliedPatch:
        origin = provenance(meta)
        return cls(component=component, file=file, sha256=meta.sha256, subject=meta.subject, author=meta.author,
                   date=meta.date, message=meta.message, source_format=meta.source_format,
                   patch_type=origin.patch_type, change_id=origin.change_id,
                   cherry_picked_from=origin.cherry_picked_from, bugs=origin.bugs, cves=origin.cves,
                   files=tuple(dict.fromkeys(c.path for c in meta.changes)), text=meta.text, commit=commit)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppliedPatch:
        data = dict(data)
        for key in ("cherry_picked_from", "cves", "files"):
            data[key] = tuple(data.get(key, ()))
        data["bugs"] = tuple(tuple(b) for b in data.get("bugs", ()))
        return cls(**data)


@dataclass(frozen=True)
class PreparedTree:
    component: str
    release: str
    tree: str  # relative to the work directory
    base_commit: str
    head: str
    head_date: int  # committer date of head (seconds): the SBOM's reproducible timestamp
    source: SourceRecord
    patches: tuple[AppliedPatch, ...] = ()
    ignored: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreparedTree:
        data = dict(data)
        data["source"] = SourceRecord.from_dict(data["source"])
        data["patches"] = tuple(AppliedPatch.from_dict(p) for p in data["patches"])
        data["ignored"] = tuple(data["ignored"])
        return cls(**data)
