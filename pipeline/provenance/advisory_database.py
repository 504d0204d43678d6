"""The advisories of every source, read once and indexed: which touch a package at a version.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from packaging.utils import canonicalize_name

from pipeline.core.files import (
    hash_inputs,
)
from pipeline.core.releases import Project
from pipeline.provenance import advisory_sources
from pipeline.provenance.advisories import DATE_BASED_FROM, Advisory
from pipeline.provenance.advisory_files import (
    VERSION_IN_TEXT_RE,
    Documents,
    Malformed,
    _ossa_raw,
    _parse_ossa,
    _parse_osv,
)
from pipeline.provenance.advisory_sources import Folder, folders

_cache: dict[str, Database] = {}
_cache_lock = threading.Lock()

T = TypeVar("T")


class Database:
    """The advisories of the configured sources: the OSSA ones read whole, the PyPI ones per package on first use."""

    def __init__(self, project: Project, found: dict[str, Folder]) -> None:
        self.sources = {setting: folder.label for setting, folder in found.items()}
        self.skipped: list[str] = []  # "<source>: <file>: what is wrong; skipped"
        self._lock = threading.Lock()
        self._found = found
        self._documents = {setting: Documents(project, folder) for setting, folder in found.items()}
        paths = sorted(found["ossa"].path.glob("*.yaml")) if "ossa" in found else []
        raw = [r for path in paths if (r := self._read("ossa", path, lambda p, docs: (p, *_ossa_raw(p, docs))))]
        # Every OSSA product is an OpenStack deliverable: its date-based versions come first, in PyPI advisories too.
        self._openstack = {canonicalize_name(p) for _, _, pairs in raw for p, _ in pairs}
        date_based = {canonicalize_name(p) for _, _, pairs in raw for p, r in pairs
                      if any(int(v.split(".")[0]) >= DATE_BASED_FROM for v in VERSION_IN_TEXT_RE.findall(r))}
        self._ossa: dict[str, list[Advisory]] = {}
        for path, data, pairs in raw:
            parse = lambda p, docs: _parse_ossa(p, data, pairs, date_based)  # noqa: B023, E731 - _read calls it at once
            if advisory := self._read("ossa", path, parse):
                for item in advisory.affected:
                    self._ossa.setdefault(item.package, []).append(replace(advisory, affected=(item,)))
        pypa = found.get("pypa_advisories")
        self._pypa = {canonicalize_name(e.name): Path(e.path) for e in os.scandir(pypa.path) if e.is_dir()} if pypa else {}
        self._merged: dict[str, tuple[Advisory, ...]] = {}

    def _read(self, setting: str, path: Path, parse: Callable[[Path, Documents], T]) -> T | None:
        try:
            return parse(path, self._documents[setting])
        except Malformed as exc:
            self.skipped.append(f"{self._found[setting].label}: {path.relative_to(self._found[setting].path)}: {exc}; skipped")
            return None

    def for_package(self, name: str) -> tuple[Advisory, ...]:
        """The package's advisories, each once: a PyPI one that repeats an OSSA's CVE becomes that OSSA's alias."""
        key = canonicalize_name(name)
        with self._lock:
            if key not in self._merged:
                found = list(self._ossa.get(key, []))
                folder = self._pypa.get(key)
                for path in sorted(folder.glob("*.yaml")) if folder else ():
                    osv = self._read("pypa_advisories", path, lambda p, docs: _parse_osv(p, docs, self._openstack))
                    if osv is None:
                        continue
                    item = next((a for a in osv.affected if a.package == key), None)
                    if item is None:
                        continue
                    same = next((i for i, a in enumerate(found) if a.source == "ossa" and set(a.cves) & set(osv.cves)), None)
                    if same is None:
                        found.append(replace(osv, affected=(item,)))
                    else:
                        found[same] = replace(found[same], aliases=tuple(dict.fromkeys((*found[same].aliases, osv.id))))
                self._merged[key] = tuple(sorted(found, key=lambda a: (a.date, a.id)))
            return self._merged[key]

    def save(self) -> None:
        """Keep what was parsed for the next run."""
        with self._lock:
            for documents in self._documents.values():
                documents.save()


def load(project: Project, refresh: bool = False) -> Database:
    """The advisory database of the configured sources (a git source is fetched when ``refresh`` or never fetched)."""
    found = {folder.setting: folder for folder in folders(project, refresh)}
    key = hash_inputs({"folders": {k: str(f.path) for k, f in found.items()},
                       "ossa": [(p.name, p.stat().st_mtime_ns) for p in found["ossa"].path.glob("*.yaml")]
                       if "ossa" in found else []})
    with _cache_lock:
        if key not in _cache:
            _cache[key] = Database(project, found)
        return _cache[key]


def forget() -> None:
    """Forget what was read: the next ``load`` reads the sources again (a long-lived process after they changed)."""
    with _cache_lock:
        _cache.clear()
    advisory_sources.forget_unreachable()
