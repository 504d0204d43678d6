"""Fetch stage: upstream source for each (release, component) at its configured ref.

Owns the bare git mirrors and the sdist cache under ``cache_dir`` (one lock
per mirror and per sdist, self-healing: a corrupt mirror or a cached file
whose hash no longer matches is removed and fetched again), ref resolution
(branch, tag, full or short SHA, end-of-life tags), versions (pbr's rules on
the mirror's history, the same online and offline; ``PKG-INFO`` for
sdists), the pristine trees at ``<workdir>/src/<release>/<component>/`` and
the release's record of where every tree came from, ``sources.json``.

Callers hold the release lock (``locks.hold(layout.lock(release))``) while
fetching: trees and ``sources.json`` of one release change under it only.
"""

from __future__ import annotations

import email.parser
import enum
import json
import re
import tarfile
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import console, locks, versions
from .config import Component, Project
from .errors import CacheCorruptError, FetchError, GitError, IntegrityError
from .files import clean_staging, read_json, remove, replace_dir, sha256_bytes, sha256_file, write_atomic, write_if_changed, write_json
from .git import clean_at, head_commit, is_corruption, rev_parse, text
from .net import fetch_url
from .redact import public_url
from .stamps import Stamp

SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
# Release tags of OpenStack projects: 32.1.0, 32.0.0.0rc1, 2024.1-eom.
VERSION_TAG_RE = re.compile(r"^\d+(\.\d+)+((\.0)?(a|b|rc)\d+)?$")
EOL_TAG_RE = re.compile(r"^\d{4}\.\d-(eom|eol)$")
BRANCH_PREFIXES = ("stable/", "unmaintained/", "feature/", "bugfix/")
COMPLETE_MARK = "openstack-patches-history"  # file in a mirror whose history and tags were fetched whole


class RefKind(str, enum.Enum):
    SHA = "sha"
    TAG = "tag"
    BRANCH = "branch"
    NAME = "name"  # branch or tag: only the remote can tell


def classify_ref(ref: str) -> RefKind:
    """Classify a ref by its spelling alone (no network)."""
    if SHA_RE.match(ref):
        return RefKind.SHA
    if VERSION_TAG_RE.match(ref) or EOL_TAG_RE.match(ref):
        return RefKind.TAG
    if ref.startswith(BRANCH_PREFIXES) or ref in ("master", "main"):
        return RefKind.BRANCH
    return RefKind.NAME


def release_version(ref: str) -> Version | None:
    """The package version a tag ref stands for, if it is a release version."""
    if not VERSION_TAG_RE.match(ref):
        return None
    try:
        return Version(ref)
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class SourceRecord:
    """Where one pristine tree came from; one entry of sources.json and part of every image record."""

    component: str
    release: str
    ref: str
    kind: str  # branch | tag | sha
    method: str  # git | sdist
    origin: str  # git or sdist URL, without credentials
    commit: str  # HEAD of the pristine tree
    upstream_revision: str | None  # upstream git commit (full SHA for git, pbr.json's for an sdist)
    version: str  # the package version pbr gives this source
    sdist_sha256: str | None = None
    tree: str = ""  # relative to the work directory
    repository: str = ""  # the upstream git repository (without credentials), also for sdists

    @classmethod
    def from_dict(cls, data: dict) -> SourceRecord:
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in fields})


def load_sources(project: Project, release: str) -> dict[str, SourceRecord]:
    data = read_json(project.layout.sources_file(release)) or {}
    try:
        return {name: SourceRecord.from_dict(entry) for name, entry in data.get("components", {}).items()}
    except TypeError:
        return {}


# --- git mirrors -----------------------------------------------------------------


class Mirror:
    """A bare mirror of one upstream repository; use under its lock (``Mirror.locked``)."""

    def __init__(self, project: Project, component: Component) -> None:
        self.project = project
        self.component = component
        self.url = component.url
        self.path = project.layout.mirror(component.name, component.url)
        self.offline = project.settings.offline

    def lock(self):
        return locks.hold(self.path.with_name(self.path.name + ".lock"), f"the git mirror of {self.component.name}")

    def ensure(self) -> None:
        clean_staging(self.path.parent, self.path.name)
        if (self.path / "HEAD").exists():
            try:  # git must still see a repository there: a damaged HEAD or config, or objects/ gone, and it does not
                text(f"--git-dir={self.path}", "rev-parse", "--is-bare-repository")
            except GitError as exc:
                self.discard(exc)
        if not (self.path / "HEAD").exists():
            remove(self.path)  # a torn directory without HEAD is no mirror
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_dir(self.path, lambda tmp: text("init", "--quiet", "--bare", str(tmp)))
        locks.clean_git_locks(self.path)

    def discard(self, exc: GitError) -> None:
        """Remove the mirror git reports as corrupt (it is fetched again); offline, that is the error."""
        why = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else f"git exit {exc.returncode}"
        if self.offline:
            raise CacheCorruptError(f"the git mirror {self.path} of {self.component.name} is corrupt ({why}), "
                                    "and offline mode forbids fetching it again",
                                    hint="run once without --offline: the mirror is then removed and fetched again")
        console.note(f"the git mirror {self.path} is corrupt ({why}); removing it and fetching again")
        remove(self.path)

    def fetch(self, *refspecs: str, depth: int | None = 1, whole: bool = False) -> None:
        args = ["fetch", "--quiet", "--no-tags", "--force"]
        if depth:
            args.append(f"--depth={depth}")
        elif self.shallow():
            args.append("--unshallow")
        text(*args, self.url, *refspecs, cwd=self.path)
        if whole:
            (self.path / COMPLETE_MARK).write_text("history and tags fetched whole\n")

    def shallow(self) -> bool:
        return (self.path / "shallow").exists()

    def complete(self) -> bool:
        return (self.path / COMPLETE_MARK).exists() and not self.shallow()

    def fetch_history(self, branch: str | None = None) -> None:
        """The whole history of ``branch`` (or every branch) and every tag: what pbr's versions need."""
        heads = f"+refs/heads/{branch}:refs/heads/{branch}" if branch else "+refs/heads/*:refs/heads/*"
        self.fetch(heads, "+refs/tags/*:refs/tags/*", depth=None, whole=branch is None)

    def pin(self, sha: str) -> None:
        # Advertised refs are what a local clone may fetch by SHA: pin every commit a tree uses.
        text("update-ref", f"refs/pinned/{sha}", sha, cwd=self.path)

    def remote_refs(self, name: str) -> dict[str, str]:
        try:
            out = text("ls-remote", self.url, f"refs/heads/{name}", f"refs/tags/{name}", f"refs/tags/{name}^{{}}")
        except GitError as exc:
            raise FetchError(
                f"{self.component.label}: cannot query {public_url(self.url)}: {exc.stderr.strip()}",
                hint="check the URL (git_base, repos) and network access, or use --offline to build from the mirror",
            ) from None
        refs = {}
        for line in out.splitlines():
            sha, _, refname = line.partition("\t")
            refs[refname] = sha
        return refs


def _resolve_git(mirror: Mirror) -> tuple[str, RefKind, str]:
    """Make the mirror hold the commit the ref names; return (full SHA, kind, version)."""
    component = mirror.component
    ref = component.ref
    kind = classify_ref(ref)

    def fail(detail: str, hint: str | None = None) -> FetchError:
        return FetchError(f"{component.label}: ref {ref!r} {detail} at {component.public_url}",
                          hint=hint or f"check releases/{component.release}/source-refs.yaml")

    def offline_missing() -> FetchError:
        return fail("is not in the local mirror, and offline mode forbids fetching",
                    hint="run once without --offline to fill the mirror")

    def fetch_or_fail(*refspecs: str, depth: int | None = 1, history_of: str | None = "") -> None:
        try:
            if history_of != "":
                mirror.fetch_history(history_of)
            else:
                mirror.fetch(*refspecs, depth=depth)
        except GitError as exc:
            if is_corruption(exc):
                raise
            raise fail(f"could not be fetched: {exc.stderr.strip()}",
                       hint="check the URL and network access (or the ref in source-refs.yaml)") from None

    def with_history(sha: str) -> str:
        if not mirror.complete():
            if mirror.offline:
                raise fail("needs the upstream history for its version, which the mirror lacks, and offline mode "
                           "forbids fetching", hint="run once without --offline")
            fetch_or_fail(history_of=None)
        return versions.pbr_version(mirror.path, sha)

    if kind is RefKind.SHA:
        sha = rev_parse(mirror.path, ref)
        if sha is None or (len(ref) < 40 and mirror.shallow() and not mirror.offline):
            # A short SHA is only unambiguous, and an old commit only present, in the whole history.
            if mirror.offline and sha is None:
                raise offline_missing()
            if not mirror.offline:
                fetch_or_fail(history_of=None)
            sha = rev_parse(mirror.path, ref)
        if sha is None:
            raise fail("names no commit")
        mirror.pin(sha)
        return sha, kind, with_history(sha)

    if kind in (RefKind.TAG, RefKind.NAME):
        sha = rev_parse(mirror.path, f"refs/tags/{ref}")
        if sha is None and not mirror.offline and kind is RefKind.TAG:
            fetch_or_fail(f"+refs/tags/{ref}:refs/tags/{ref}")
            sha = rev_parse(mirror.path, f"refs/tags/{ref}")
        if sha is not None:
            mirror.pin(sha)
            version = versions.tag_version(ref)
            if version is None or not versions.is_version_tag(ref):
                version = with_history(sha)  # 2025.1-eom: pbr walks back to the last release tag
            return sha, RefKind.TAG, version
        if kind is RefKind.TAG and mirror.offline:
            raise offline_missing()

    if mirror.offline:
        sha = rev_parse(mirror.path, f"refs/heads/{ref}")
        if sha is None:
            raise offline_missing()
        return sha, RefKind.BRANCH, versions.pbr_version(mirror.path, sha)

    remote = mirror.remote_refs(ref)
    if f"refs/tags/{ref}" in remote:
        fetch_or_fail(f"+refs/tags/{ref}:refs/tags/{ref}")
        sha = rev_parse(mirror.path, f"refs/tags/{ref}")
        assert sha
        mirror.pin(sha)
        version = versions.tag_version(ref) if versions.is_version_tag(ref) else with_history(sha)
        return sha, RefKind.TAG, version
    if f"refs/heads/{ref}" in remote:
        sha = remote[f"refs/heads/{ref}"]
        if rev_parse(mirror.path, sha) != sha or mirror.shallow():
            fetch_or_fail(history_of=ref)
        text("update-ref", f"refs/heads/{ref}", sha, cwd=mirror.path)
        mirror.pin(sha)
        return sha, RefKind.BRANCH, versions.pbr_version(mirror.path, sha)
    raise fail("is neither a branch nor a tag (for a commit, give its SHA)")


def _tree_from_mirror(mirror: Path, sha: str, tag: str | None, dest: Path) -> None:
    text("init", "--quiet", str(dest))
    refspecs = [sha]
    if tag:
        refspecs.append(f"+refs/tags/{tag}:refs/tags/{tag}")  # pbr reads the tag from the tree
    text("fetch", "--quiet", "--no-tags", "--depth=1", mirror.as_uri(), *refspecs, cwd=dest)
    text("checkout", "--quiet", "--detach", sha, cwd=dest)


def _with_mirror(mirror: Mirror, action: Callable[[], tuple]) -> tuple:
    """Run ``action`` on the mirror; a corrupt mirror is removed and fetched again once."""
    with mirror.lock():
        mirror.ensure()
        try:
            return action()
        except GitError as exc:
            if not is_corruption(exc):
                raise
            mirror.discard(exc)
            mirror.ensure()
            return action()


# --- sdists ----------------------------------------------------------------------


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str


class _LinkParser(HTMLParser):
    """PEP 503 HTML index pages: anchors with ``#sha256=`` fragments."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def index_files(project: Project, name: str) -> list[IndexFile]:
    """Every file the index lists for project ``name`` (PEP 691 JSON or PEP 503 HTML)."""
    network = project.network
    page = f"{network.index_url}/{canonicalize_name(name)}/"
    body, final_url = fetch_url(page, network, accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1",
                                what=f"the index page of {name}")
    files: list[IndexFile] = []
    text_body = body.decode("utf-8", "replace")
    if text_body.lstrip().startswith("{"):
        for entry in json.loads(text_body).get("files", []):
            sha = entry.get("hashes", {}).get("sha256")
            if sha:
                files.append(IndexFile(entry["filename"], urljoin(final_url, entry["url"]), sha))
    else:
        parser = _LinkParser()
        parser.feed(text_body)
        for href in parser.links:
            url, _, fragment = href.partition("#")
            if fragment.startswith("sha256="):
                files.append(IndexFile(url.rsplit("/", 1)[-1], urljoin(final_url, url), fragment[7:]))
    return files


def find_sdist(files: list[IndexFile], project_name: str, version: Version) -> IndexFile | None:
    wanted = canonicalize_name(project_name)
    for entry in files:
        if not entry.filename.endswith(".tar.gz"):
            continue
        name, _, ver = entry.filename[: -len(".tar.gz")].rpartition("-")
        try:
            if canonicalize_name(name) == wanted and Version(ver) == version:
                return entry
        except InvalidVersion:
            continue
    return None


def cached_download(project: Project, entry: IndexFile, cache: Path, what: str) -> Path:
    """``entry`` from the cache, verified by its sha256; downloaded (and checked) when missing or corrupt."""
    path = cache / entry.filename
    with locks.hold(project.layout.cache_lock(f"download-{entry.sha256[:16]}"), f"the download of {entry.filename}"):
        if path.exists():
            if sha256_file(path) == entry.sha256:
                return path
            if project.settings.offline:
                raise CacheCorruptError(f"the cached file {path} is corrupt (its sha256 is not the index's)",
                                        hint="run once without --offline: it is then downloaded again")
            console.note(f"the cached file {path} is corrupt (sha256 mismatch); downloading it again")
            path.unlink()
        body, _ = fetch_url(entry.url, project.network, what=what)
        actual = sha256_bytes(body)
        if actual != entry.sha256:
            raise IntegrityError(
                f"{public_url(entry.url)}: sha256 is {actual}, the index publishes {entry.sha256}",
                hint="the download was corrupted or tampered with; retry, and check any proxy in between",
            )
        write_atomic(path, body)
        return path


def _cached_sdist(project: Project, component: Component, version: Version, required: bool) -> tuple[Path, IndexFile] | None:
    """The verified sdist, downloading it if needed; None if the index lacks it (and it is optional)."""
    cache = project.layout.sdist_cache()
    record_path = cache / f"{canonicalize_name(component.pypi_name)}-{version}.json"
    record = read_json(record_path)
    entry = None
    if isinstance(record, dict) and {"filename", "url", "sha256"} <= set(record):
        entry = IndexFile(record["filename"], record["url"], record["sha256"])
    elif project.settings.offline:
        if required:
            raise FetchError(f"{component.label}: the sdist of {component.pypi_name} {version} is not in the cache, "
                             "and offline mode forbids downloading it", hint="run once without --offline")
        return None
    else:
        entry = find_sdist(index_files(project, component.pypi_name), component.pypi_name, version)
        if entry is None:
            if required:
                raise FetchError(
                    f"{component.label}: no sdist of {component.pypi_name} {version} on {project.network.index_public}",
                    hint="use source_mode git, or check pipeline.pypi_names for the distribution name",
                )
            return None
    path = cached_download(project, entry, cache, f"the sdist of {component.label}")
    if record != asdict(entry):
        write_json(record_path, asdict(entry))
    return path, entry


def _tree_from_sdist(archive: Path, entry: IndexFile, version: Version, dest: Path) -> tuple[str | None, str]:
    """Unpack into ``dest`` as a one-commit git repository tagged with the version.

    A git repository (rather than a plain directory) makes pbr list files with
    ``git ls-files``, so files that patches add reach the wheel.  Returns
    (pbr's upstream revision if recorded, the version from PKG-INFO).
    """
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack-") as unpack:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(unpack, filter="data")
                newest = max((int(m.mtime) for m in tar.getmembers()), default=0)
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise
            raise FetchError(f"{archive}: not a readable sdist ({exc})", hint=f"remove {archive} and rerun") from None
        tops = list(Path(unpack).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise FetchError(f"{archive}: expected one top-level directory in the sdist")
        tops[0].rename(dest)
    revision = None
    for pbr_json in dest.glob("*.egg-info/pbr.json"):
        revision = (read_json(pbr_json) or {}).get("git_version")
    pkg_version = str(version)
    pkg_info = dest / "PKG-INFO"
    if pkg_info.exists():
        parsed = email.parser.Parser().parsestr(pkg_info.read_text(encoding="utf-8", errors="replace"), headersonly=True)
        pkg_version = parsed.get("Version", pkg_version).strip()
    stamp = f"@{max(newest, 86400)} +0000"
    identity = {
        "GIT_AUTHOR_NAME": "openstack-patches", "GIT_AUTHOR_EMAIL": "sdist-import@openstack-patches.invalid",
        "GIT_COMMITTER_NAME": "openstack-patches", "GIT_COMMITTER_EMAIL": "sdist-import@openstack-patches.invalid",
        "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp,
    }
    text("init", "--quiet", str(dest))
    text("add", "--all", "--force", ".", cwd=dest)
    message = f"Import {entry.filename}\n\nSource: {public_url(entry.url)}\nSHA256: {entry.sha256}\n"
    if revision:
        message += f"Upstream-Revision: {revision}\n"
    text("commit", "--quiet", "--no-verify", "--allow-empty", "-m", message, cwd=dest, env=identity)
    text("tag", pkg_version, cwd=dest)
    return revision, pkg_version


# --- the stage -------------------------------------------------------------------


def _sdist_version(project: Project, component: Component) -> Version | None:
    if project.settings.source_mode == "git":
        return None
    return release_version(component.ref)


def _stamp_inputs(project: Project, component: Component) -> dict:
    return {"ref": component.ref, "url": component.public_url, "pypi_name": component.pypi_name,
            "mode": project.settings.source_mode, "index": project.network.index_public}


def fetch_component(project: Project, component: Component, dest: Path | None = None) -> tuple[SourceRecord, str]:
    """Bring one pristine tree up to date; return its record and what was done.

    ``dest`` puts the tree elsewhere than the release's (a component at another ref), with its own stamp.
    """
    layout = project.layout
    offline = project.settings.offline
    tree = dest or layout.source_tree(component.release, component.name)
    inputs = _stamp_inputs(project, component)
    stamp = Stamp(layout.stamp("fetch", component.release, component.name) if dest is None
                  else dest.with_name(dest.name + ".stamp.json"))
    previous = stamp.current(inputs)
    # Only the pristine tree's commit matters (trees are cloned from its objects), not its work tree.
    if previous and head_commit(tree) == previous["commit"]:
        record = SourceRecord.from_dict(previous)
        if record.kind != RefKind.BRANCH.value or offline:
            return record, "up to date"
        tip = Mirror(project, component).remote_refs(component.ref).get(f"refs/heads/{component.ref}")
        if tip == record.upstream_revision:
            return record, "up to date (branch unchanged)"

    version = _sdist_version(project, component)
    sdist = None
    if version is not None:
        sdist = _cached_sdist(project, component, version, required=project.settings.source_mode == "sdist")
    stamp.clear()
    if sdist is not None:
        archive, entry = sdist
        found: list[tuple[str | None, str]] = []
        replace_dir(tree, lambda dest: found.append(_tree_from_sdist(archive, entry, version, dest)))
        revision, pkg_version = found[0]
        record = SourceRecord(
            component=component.name, release=component.release, ref=component.ref, kind=RefKind.TAG.value,
            method="sdist", origin=public_url(entry.url), commit=text("rev-parse", "HEAD", cwd=tree).strip(),
            upstream_revision=revision, version=pkg_version, sdist_sha256=entry.sha256, tree=layout.rel(tree),
            repository=component.public_url,
        )
        action = f"sdist {entry.filename}"
    else:
        mirror = Mirror(project, component)

        def resolve_and_checkout() -> tuple:
            sha, kind, pkg_version = _resolve_git(mirror)
            tag = component.ref if kind is RefKind.TAG else None
            if not clean_at(tree, sha):
                replace_dir(tree, lambda dest: _tree_from_mirror(mirror.path, sha, tag, dest))
            return sha, kind, pkg_version

        try:
            sha, kind, pkg_version = _with_mirror(mirror, resolve_and_checkout)
        except FetchError as error:
            if version is None:
                raise
            # A release tag the index lacks, and a repository that cannot say otherwise: most likely no tag at all.
            raise FetchError(f"{error.message}; the package index has no sdist {component.pypi_name} {version} "
                             f"either (it has one for every release tag), so {component.ref!r} is likely not a tag of "
                             f"{component.name}", hint=f"check {component.name} in releases/{component.release}/"
                                                       "source-refs.yaml (`pip index versions "
                                                       f"{component.pypi_name}` lists the releases)") from None
        record = SourceRecord(
            component=component.name, release=component.release, ref=component.ref, kind=kind.value, method="git",
            origin=component.public_url, commit=sha, upstream_revision=sha, version=pkg_version, tree=layout.rel(tree),
            repository=component.public_url,
        )
        action = f"git {kind.value} {component.ref} -> {sha[:12]}, version {pkg_version}"
    stamp.record(inputs, asdict(record))
    return record, action


def fetch(project: Project, release: str, names: list[str] | tuple[str, ...] = (), jobs: int = 1) -> dict[str, SourceRecord]:
    """Fetch the named components of a release (all by default) and update sources.json.

    The caller holds the release lock.
    """
    layout = project.layout
    components = project.components(release, names)
    clean_staging(layout.workdir / "src" / release)

    def one(component: Component) -> SourceRecord:
        with console.step(f"fetch {component.name} ({release})") as outcome:
            record, outcome["status"] = fetch_component(project, component)
        return record

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(components) or 1))) as pool:
        fetched = dict(zip([c.name for c in components], pool.map(one, components)))
    records = {k: v for k, v in load_sources(project, release).items() if k in project.release(release).refs}
    records.update(fetched)
    write_if_changed(layout.sources_file(release), json.dumps({
        "release": release,
        "components": {name: asdict(rec) for name, rec in sorted(records.items())},
    }, indent=2, sort_keys=True) + "\n")
    return fetched
