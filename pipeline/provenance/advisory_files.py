"""Reading advisory files: OpenStack's OSSA YAML and PyPI's OSV records into ``Advisory`` objects.

OSSA version ranges as OSSA writes them (comma-separated alternatives, each
a space-separated specifier set, odd spellings included; prose before
September 2015 read as stated; OpenStack's date-based versions ordered before
its semantic ones), OSV ranges as events; a file that cannot be read is
``Malformed``, named and skipped by the caller.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Set as AbstractSet
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pipeline.core.files import (
    read_json,
    write_json,
)
from pipeline.core.releases import Project
from pipeline.core.stamps import tool_id
from pipeline.patches.provenance import CVE_RE
from pipeline.provenance.advisories import (
    BUG_RE,
    Advisory,
    Affected,
    Alternative,
    _specifiers,
    ordered,
)
from pipeline.provenance.advisory_sources import Folder

VERSION_IN_TEXT_RE = re.compile(r"\d+(?:\.\d+)+")


OPEN_PROSE_RE = re.compile(r"\b(after|later|austin|bexar|cactus|diablo|essex|folsom|grizzly|havana|icehouse|juno|kilo)\b",
                            re.IGNORECASE)


SPECIFIER_RE = re.compile(r"(==|!=|<=|>=|<|>|=)?\s*(\d+(?:\.\d+)*(?:(?:a|b|rc|\.post|\.dev)\d+)*)")


PROSE_UNTIL = datetime.date(2016, 1, 1)  # ranges in words ("up to 2014.1.3") end with OSSA-2015-018




class Malformed(Exception):
    """What is wrong with one advisory file (caught per file: the file is skipped and named)."""


class Documents:
    """The YAML documents of one source folder, kept as JSON by file size and mtime (read 10x faster than YAML)."""

    def __init__(self, project: Project, folder: Folder) -> None:
        self.folder = folder
        self.path = project.layout.cache_dir / "advisories" / f"documents-{folder.setting}.json"
        stored = read_json(self.path)
        ok = isinstance(stored, dict) and stored.get("tool") == tool_id() and isinstance(stored.get("files"), dict)
        self.entries: dict[str, Any] = stored["files"] if ok else {}
        self.changed = False

    def load(self, path: Path) -> dict[str, Any]:
        """The file's document; ``Malformed`` (remembered like a document) when it has none."""
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = self.entries.get(str(path))
        if not (isinstance(entry, list) and entry[:2] == stamp):
            try:
                entry = [*stamp, json.loads(json.dumps(_load_yaml(path), default=str)), None]
            except Malformed as exc:
                entry = [*stamp, None, str(exc)]
            self.entries[str(path)], self.changed = entry, True
        if entry[3] is not None:
            raise Malformed(entry[3])
        data: dict[str, Any] = entry[2]  # the cache's JSON: a YAML document's mapping
        return data

    def save(self) -> None:
        if self.changed:  # only this folder's files: an earlier commit's export is gone
            prefix = f"{self.folder.path}{os.sep}"
            write_json(self.path, {"tool": tool_id(), "files": {k: v for k, v in self.entries.items() if k.startswith(prefix)}})


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_bytes(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise Malformed(f"line {mark.line + 1 if mark else '?'}: {exc.problem or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise Malformed(f"not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise Malformed("not a mapping")
    return data


def _strings(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise Malformed(f"{what} is not a list of strings")
    return [str(v) for v in value]


def _split_alternatives(text: str) -> list[list[tuple[str, str]]] | None:
    """``'>=28.0.0 <28.0.2, ==29.0.0'`` as alternatives of (operator, version); None when it is prose."""
    alternatives = []
    for part in re.split(r",|\band\b", text):
        if not part.strip():
            continue
        specs = [(op or "==", version) for op, version in SPECIFIER_RE.findall(part)]
        if not specs or SPECIFIER_RE.sub("", part).strip():
            return None
        alternatives.append([("==" if op == "=" else op, v) for op, v in specs])
    # '>=25.0.0, <26.1.0' was meant as one alternative: a lone lower bound before a lone upper bound above it.
    merged: list[list[tuple[str, str]]] = []
    for specs in alternatives:
        last = merged[-1] if merged else None
        if (last and len(last) == 1 and last[0][0] in (">=", ">") and len(specs) == 1 and specs[0][0] in ("<", "<=")
                and Version(specs[0][1]) > Version(last[0][1])):
            last.append(specs[0])
        else:
            merged.append(specs)
    return merged or None


def _ossa_range(product: str, text: str, date: datetime.date, date_based: bool) -> Affected:
    specs = _split_alternatives(text)
    if specs is not None:
        try:
            return Affected(product, text, tuple(Alternative(" ".join(f"{o}{v}" for o, v in s), _specifiers(s, True))
                                                 for s in specs), True)
        except (InvalidSpecifier, InvalidVersion) as exc:
            raise Malformed(f"{product}: version range {text!r}: {exc}") from None
    if date >= PROSE_UNTIL:
        raise Malformed(f"{product}: version range {text!r} is not a list of version specifiers")
    # Prose (advisories before September 2015): up to the newest version it names, or, for an open end or a
    # series named by its code name ("All versions", "Grizzly and later", "2011.3, Essex"), the date-based
    # releases up to the advisory's year.
    named = VERSION_IN_TEXT_RE.findall(text)
    if named and not OPEN_PROSE_RE.search(text):
        bound, reading = ("<=", max(named, key=lambda v: ordered(v, True))), ""
    elif date_based:
        bound, reading = ("<", str(date.year + 1)), f" (the date-based releases up to {date.year})"
    else:
        raise Malformed(f"{product}: version range {text!r} names no version to bound it")
    words = f"{bound[0]}{bound[1]}"
    return Affected(product, text, (Alternative(words, _specifiers([bound], True)),), True,
                    reading=f"read as {words}{reading}")


def _ossa_products(entry: object) -> list[tuple[str, str]]:
    """(product, range text) of one ``affected-products`` entry ('Cinder, Glance, Nova' with 'Cinder <19.1.2; ...')."""
    if not isinstance(entry, dict) or "product" not in entry or "version" not in entry:
        raise Malformed("an affected-products entry lacks product or version")
    names = [n.strip() for n in str(entry["product"]).split(",") if n.strip()]
    ranges = str(entry["version"]).strip()
    if len(names) == 1:
        return [(names[0], ranges)]
    found = []
    for part in ranges.split(";"):
        head, _, rest = part.strip().partition(" ")
        if head.lower() not in {n.lower() for n in names}:
            raise Malformed(f"products {entry['product']!r}: {part.strip()!r} does not start with one of them")
        found.append((head, rest.strip()))
    return found


def _ossa_raw(path: Path, documents: Documents) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    data = documents.load(path)
    for key in ("id", "date", "affected-products"):
        if key not in data:
            raise Malformed(f"no {key!r}")
    if not isinstance(data["affected-products"], list):
        raise Malformed("affected-products is not a list")
    return data, [pair for entry in data["affected-products"] for pair in _ossa_products(entry)]


def _parse_ossa(path: Path, data: dict[str, Any], products: list[tuple[str, str]], date_based: AbstractSet[str]) -> Advisory:
    date = data["date"]
    if not isinstance(date, datetime.date):
        try:
            date = datetime.date.fromisoformat(str(date))
        except ValueError:
            raise Malformed(f"date {data['date']!r} is not a date") from None
    vulns = data.get("vulnerabilities") or []
    if not isinstance(vulns, list):
        raise Malformed("vulnerabilities is not a list")
    cves = [str(v.get("cve-id", "")).strip() for v in vulns if isinstance(v, dict)]
    issues = data.get("issues") or {}
    links = _strings(issues.get("links") if isinstance(issues, dict) else issues, "issues.links")
    reviews_raw = data.get("reviews") or {}
    if not isinstance(reviews_raw, dict):
        raise Malformed("reviews is not a mapping")
    reviews = {str(k): tuple(_strings(v, f"reviews.{k}")) for k, v in reviews_raw.items() if isinstance(v, list)}
    affected = tuple(_ossa_range(canonicalize_name(p), r, date, canonicalize_name(p) in date_based) for p, r in products)
    ossa_id = str(data["id"]).strip()
    return Advisory(
        id=ossa_id, source="ossa", file=path.name, title=str(data.get("title", "")).strip(), date=date.isoformat(),
        url=f"https://security.openstack.org/ossa/{ossa_id}.html",
        cves=tuple(dict.fromkeys(c for c in cves if CVE_RE.fullmatch(c))), aliases=(),
        bugs=tuple(dict.fromkeys(m.group(1) for link in links if (m := BUG_RE.search(link)))),
        reviews=MappingProxyType(reviews), affected=affected,
    )


def _osv_alternatives(affected: dict[str, Any], openstack: bool) -> list[Alternative]:
    alternatives = []
    for rng in affected.get("ranges") or []:
        if not isinstance(rng, dict) or rng.get("type") not in ("ECOSYSTEM", "SEMVER"):
            continue  # GIT ranges name commits; the versions list covers them
        events = rng.get("events")
        if not isinstance(events, list) or not all(isinstance(e, dict) and len(e) == 1 for e in events):
            raise Malformed("a range's events are not single-key mappings")
        # OSV does not promise sorted events: walk them in version order.
        steps = sorted(((k, str(v)) for e in events for k, v in e.items()), key=lambda kv: ordered(kv[1], openstack))
        start: str | None = None
        for kind, version in steps:
            if kind == "introduced":
                start = version
            elif kind in ("fixed", "last_affected") and start is not None:
                op = "<" if kind == "fixed" else "<="
                specs = ([(">=", start)] if start != "0" else []) + [(op, version)]
                alternatives.append(Alternative(" ".join(f"{o}{v}" for o, v in specs), _specifiers(specs, openstack)))
                start = None
        if start is not None:
            alternatives.append(Alternative(f">={start}", _specifiers([(">=", start)], openstack)))
    return alternatives


def _parse_osv(path: Path, documents: Documents, openstack_names: AbstractSet[str]) -> Advisory | None:
    data = documents.load(path)
    if data.get("withdrawn"):
        return None
    if "id" not in data or not isinstance(data.get("affected"), list):
        raise Malformed("no id or no affected list")
    aliases = _strings(data.get("aliases"), "aliases")
    affected = []
    for entry in data["affected"]:
        package = entry.get("package") if isinstance(entry, dict) else None
        if not isinstance(package, dict) or package.get("ecosystem") != "PyPI" or not package.get("name"):
            continue
        name = canonicalize_name(str(package["name"]))
        try:
            alternatives = _osv_alternatives(entry, name in openstack_names)
        except (InvalidSpecifier, InvalidVersion) as exc:
            raise Malformed(f"{name}: {exc}") from None
        listed = frozenset(str(v) for v in entry.get("versions") or [])
        text = ", ".join(a.text for a in alternatives) or "the versions it lists"
        affected.append(Affected(name, text, tuple(alternatives), name in openstack_names, listed=listed))
    references = [str(r.get("url", "")) for r in data.get("references") or [] if isinstance(r, dict)]
    osv_id = str(data["id"])
    return Advisory(
        id=osv_id, source="pypa_advisories", file=str(path.relative_to(documents.folder.path)),
        title=str(data.get("summary") or data.get("details") or "").strip().split("\n")[0][:160],
        date=str(data.get("published", ""))[:10], url=f"https://osv.dev/vulnerability/{osv_id}",
        cves=tuple(a for a in aliases if CVE_RE.fullmatch(a)), aliases=tuple(a for a in aliases if not CVE_RE.fullmatch(a)),
        bugs=tuple(dict.fromkeys(m.group(1) for r in references if (m := BUG_RE.search(r)))),
        reviews=MappingProxyType({}), affected=tuple(affected),
    )
