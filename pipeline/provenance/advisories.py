"""Security advisories as inputs: the two sources, fetched or read, and every advisory parsed.

Owns the settings ``ossa`` (openstack/ossa: ``ossa/OSSA-*.yaml``) and
``pypa_advisories`` (pypa/advisory-database: ``vulns/<package>/*.yaml``,
OSV format).  Each is a git URL, fetched like the sources (a shallow mirror
under ``cache_dir/git``, its lock, the configured proxies and CA bundle; one
``git ls-remote`` when nothing changed) and exported once per commit under
``cache_dir/advisories/``, or a local folder read as it is.

Every affected range becomes alternatives of ``packaging`` specifier sets,
however the advisory writes it: ``'>=28.0.0 <28.0.2, ==29.0.0'``, OSV
events, and the prose of the advisories before September 2015 ("up to
2014.1.3", "All versions").  OpenStack projects numbered their releases by
date until 2015 (``2015.1.0``) and semantically since (``11.0.0``, later
than any of those), so for them every semantic version gets epoch 1: the
ranges of old advisories then never take in a current release, as a plain
version comparison (and many scanners) would.  A file that cannot be read
is listed in ``Database.skipped`` with what is wrong, never raised.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import tarfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pipeline.core import console
from pipeline.core.errors import ConfigError, FetchError, GitError
from pipeline.core.files import (
    clean_staging,
    hash_inputs,
    read_json,
    remove,
    replace_dir,
    write_json,
)
from pipeline.core.git import git, rev_parse, text
from pipeline.core.redact import public_url
from pipeline.core.releases import Component, Project
from pipeline.core.settings import is_local
from pipeline.core.stamps import tool_id
from pipeline.patches.patchfile import CVE_RE
from pipeline.sources.fetch import Mirror

SOURCES = {"ossa": "ossa", "pypa_advisories": "vulns"}  # setting -> the folder of a repository that holds the YAML
BRANCH = "refs/heads/advisories"
ADVISORY_ID_RE = re.compile(r"\b(?:OSSA-\d{4}-\d{3,}|PYSEC-\d{4}-\d+|GHSA(?:-[23456789cfghjmpqrvwx]{4}){3})\b")
BUG_RE = re.compile(r"launchpad\.net/(?:[^/\s]+/\+)?bugs?/(\d+)")
REVIEW_KEY_RE = re.compile(r"^\s*([^\s(]+)\s*(?:\((.*)\))?")
REVIEW_RE = re.compile(r"(?:/\+/|/c/|#/c/|\.org/)(\d+)/?$")
VERSION_IN_TEXT_RE = re.compile(r"\d+(?:\.\d+)+")
OPEN_PROSE_RE = re.compile(r"\b(after|later|austin|bexar|cactus|diablo|essex|folsom|grizzly|havana|icehouse|juno|kilo)\b",
                            re.IGNORECASE)
SPECIFIER_RE = re.compile(r"(==|!=|<=|>=|<|>|=)?\s*(\d+(?:\.\d+)*(?:(?:a|b|rc|\.post|\.dev)\d+)*)")
PROSE_UNTIL = datetime.date(2016, 1, 1)  # ranges in words ("up to 2014.1.3") end with OSSA-2015-018
DATE_BASED_FROM = 2010  # a release number from this up is a year: OpenStack's date-based versions (2011.1 .. 2015.1)
_cache: dict[str, Database] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Alternative:
    """One alternative of an affected range: the text that says it and the specifier set it stands for."""

    text: str
    specifiers: SpecifierSet  # over ordered() versions

    @property
    def fixed(self) -> str:
        """Where the range ends, in words: ``fixed in 28.0.2``, ``fixed after 28.0.0`` or no fix yet."""
        bounds = {s.operator: s.version.split("!")[-1] for s in self.specifiers}
        if "<" in bounds:
            return f"fixed in {bounds['<']}"
        for op in ("<=", "==", "==="):
            if op in bounds:
                return f"fixed after {bounds[op]}"
        return "no fixed version named"


@dataclass(frozen=True)
class Affected:
    """The versions of one package an advisory affects."""

    package: str  # canonical distribution name
    text: str  # the range as the advisory writes it
    alternatives: tuple[Alternative, ...]
    openstack: bool  # date-based versions precede semantic ones
    reading: str = ""  # how a range given in prose was read, for the evidence
    listed: frozenset[str] = frozenset()  # OSV: versions named one by one, as written

    def containing(self, version: str) -> Alternative | None:
        """The alternative that contains ``version``, if any."""
        try:
            key = ordered(version, self.openstack)
        except InvalidVersion:
            return None
        hit = next((a for a in self.alternatives if a.specifiers.contains(key, prereleases=True)), None)
        if hit is None and (version in self.listed or str(Version(version)) in self.listed):
            return Alternative(f"=={version} (listed)", SpecifierSet(f"=={key}"))
        return hit


@dataclass(frozen=True)
class Advisory:
    id: str  # OSSA-2026-005, PYSEC-2024-60, GHSA-...
    source: str  # ossa | pypa_advisories
    file: str  # the file, relative to its source's folder
    title: str
    date: str
    url: str
    cves: tuple[str, ...]  # real CVE identifiers (not "CVE-2026-pending")
    aliases: tuple[str, ...]  # every other identifier it is known by
    bugs: tuple[str, ...]  # Launchpad bug numbers
    reviews: Mapping[str, tuple[str, ...]]  # series ("2025.2/flamingo") -> Gerrit review URLs
    affected: tuple[Affected, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.id, *self.cves, *self.aliases)

    def reviews_for(self, project: str, release: str | None = None) -> tuple[str, ...]:
        """The Gerrit reviews of a project (for one release's series) the advisory names.

        Keys look like ``2025.2/flamingo``, ``2025.2/flamingo(keystone)`` or
        ``2024.1/caracal (unmaintained)``: a project in parentheses limits
        the reviews to it.
        """
        found = []
        for key, urls in self.reviews.items():
            m = REVIEW_KEY_RE.match(key)
            series, note = (m.group(1), (m.group(2) or "").strip()) if m else (key, "")
            if note and note != "unmaintained" and canonicalize_name(note) != canonicalize_name(project):
                continue
            if release is None or series.split("/")[0] == release:
                found += urls
        return tuple(found)

    def review_numbers(self, project: str, release: str | None = None) -> list[str]:
        return [m.group(1) for url in self.reviews_for(project, release) if (m := REVIEW_RE.search(url))]


def ordered(version: str, openstack: bool) -> Version:
    """A version on a scale where an OpenStack project's date-based releases come before its semantic ones."""
    parsed = Version(version)
    if openstack and not parsed.epoch and parsed.release[0] < DATE_BASED_FROM and parsed.release != (0,):
        return Version(f"1!{parsed}")
    return parsed


def _specifiers(specs: Iterable[tuple[str, str]], openstack: bool) -> SpecifierSet:
    return SpecifierSet(",".join(f"{op}{ordered(v, openstack)}" for op, v in specs))


# --- the sources ---------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    setting: str
    path: Path  # the folder holding the YAML files
    label: str  # for messages and the report: the folder, or the URL and commit


def _git_folder(project: Project, setting: str, url: str, refresh: bool) -> Folder:
    """The repository's YAML folder at its default branch's head, from the mirror (fetched when asked or missing)."""
    name = SOURCES[setting]
    mirror = Mirror(project, Component(name=f"advisories-{name}", release="advisories", ref="HEAD", url=url,
                                       pypi_name="", is_service=False))
    shown = public_url(url)
    with mirror.lock():
        mirror.ensure()
        commit = rev_parse(mirror.path, BRANCH)
        if (refresh or commit is None) and not project.settings.offline:
            try:
                head = text("ls-remote", url, "HEAD").split()
                if not head:
                    raise GitError(("ls-remote", shown, "HEAD"), None, 0, "the repository has no HEAD")
                if rev_parse(mirror.path, head[0]) != head[0]:
                    mirror.fetch(f"+HEAD:{BRANCH}", depth=1)
                text("update-ref", BRANCH, head[0], cwd=mirror.path)
                commit = head[0]
            except GitError as exc:
                reason = (exc.stderr.strip().splitlines() or [f"exit {exc.returncode}"])[-1]
                if commit is None:
                    raise FetchError(f"pipeline.{setting}: cannot fetch {shown}: {reason}",
                                     hint=f"point {setting} at a reachable mirror of the repository or at a local folder "
                                          f"of its {name}/ YAML files (INVOKE_PIPELINE_{setting.upper()}=...)") from None
                console.note(f"{setting}: {shown} unreachable ({reason}); using the mirror as of commit {commit[:12]}")
        if commit is None:
            raise FetchError(f"pipeline.{setting}: {shown} has not been fetched, and offline mode forbids fetching it",
                             hint="run invoke advisories once without --offline, or point it at a local folder")
        dest = project.layout.advisories_export(name, url) / commit
        if not dest.is_dir():
            _export(mirror.path, commit, name, dest)
    return Folder(setting, dest / name, f"{shown} at {commit[:12]}")


def _export(repo: Path, commit: str, folder: str, dest: Path) -> None:
    """The folder of ``commit`` as plain files, whole or not at all; earlier commits' exports are dropped."""
    archive = git("archive", "--format=tar", commit, f"{folder}/", cwd=repo, binary=True)
    assert isinstance(archive, bytes)

    def unpack(staging: Path) -> None:
        staging.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(staging, filter="data")

    clean_staging(dest.parent)
    replace_dir(dest, unpack)
    for older in dest.parent.iterdir():
        if older != dest and not older.name.startswith("."):
            remove(older)


def folders(project: Project, refresh: bool) -> list[Folder]:
    """Where each configured source's YAML files are (fetching a git source when ``refresh`` or never fetched)."""
    found = []
    for setting, name in SOURCES.items():
        value = getattr(project.settings, setting)
        if not value:
            continue
        if not is_local(value):
            found.append(_git_folder(project, setting, value, refresh))
            continue
        path = Path(value)
        if (path / name).is_dir():  # a checkout of the repository
            path = path / name
        if not path.is_dir():
            raise ConfigError(f"pipeline.{setting}: {path} is not a folder",
                              hint=f"give a git URL or a folder of {'OSSA-*.yaml' if name == 'ossa' else '<package>/*.yaml'} files")
        found.append(Folder(setting, path, str(path)))
    return found


# --- parsing ---------------------------------------------------------------------------


class Malformed(Exception):
    """What is wrong with one advisory file (caught per file: the file is skipped and named)."""


class Documents:
    """The YAML documents of one source folder, kept as JSON by file size and mtime (read 10x faster than YAML)."""

    def __init__(self, project: Project, folder: Folder) -> None:
        self.folder = folder
        self.path = project.layout.cache_dir / "advisories" / f"documents-{folder.setting}.json"
        stored = read_json(self.path)
        ok = isinstance(stored, dict) and stored.get("tool") == tool_id() and isinstance(stored.get("files"), dict)
        self.entries: dict = stored["files"] if ok else {}
        self.changed = False

    def load(self, path: Path) -> dict:
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
        return entry[2]

    def save(self) -> None:
        if self.changed:  # only this folder's files: an earlier commit's export is gone
            prefix = f"{self.folder.path}{os.sep}"
            write_json(self.path, {"tool": tool_id(), "files": {k: v for k, v in self.entries.items() if k.startswith(prefix)}})


def _load_yaml(path: Path) -> dict:
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


def _ossa_raw(path: Path, documents: Documents) -> tuple[dict, list[tuple[str, str]]]:
    data = documents.load(path)
    for key in ("id", "date", "affected-products"):
        if key not in data:
            raise Malformed(f"no {key!r}")
    if not isinstance(data["affected-products"], list):
        raise Malformed("affected-products is not a list")
    return data, [pair for entry in data["affected-products"] for pair in _ossa_products(entry)]


def _parse_ossa(path: Path, data: dict, products: list[tuple[str, str]], date_based: set[str]) -> Advisory:
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


def _osv_alternatives(affected: dict, openstack: bool) -> list[Alternative]:
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


def _parse_osv(path: Path, documents: Documents, openstack_names: set[str]) -> Advisory | None:
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
            if advisory := self._read("ossa", path, lambda p, docs: _parse_ossa(p, data, pairs, date_based)):
                for item in advisory.affected:
                    self._ossa.setdefault(item.package, []).append(replace(advisory, affected=(item,)))
        pypa = found.get("pypa_advisories")
        self._pypa = {canonicalize_name(e.name): Path(e.path) for e in os.scandir(pypa.path) if e.is_dir()} if pypa else {}
        self._merged: dict[str, tuple[Advisory, ...]] = {}

    def _read(self, setting: str, path: Path, parse):
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
                    item = next((a for a in osv.affected if a.package == key), None) if osv else None
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
