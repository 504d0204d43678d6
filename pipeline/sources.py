"""Fetch stage: upstream source for each (release, component) at its configured ref.

Owns the persistent bare git mirrors and the sdist cache under ``cache_dir``,
ref resolution (branch, tag, full or short SHA), the pristine trees at
``<workdir>/src/<release>/<component>/`` and the record of where every tree
came from, ``<workdir>/<release>/sources.json``.
"""

from __future__ import annotations

import enum
import json
import re
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import console
from .config import Component, Project
from .errors import FetchError, IntegrityError
from .git import GitError, clean_at, git, rev_parse
from .net import fetch_url
from .stamps import Stamp, hash_inputs, read_json, replace_dir, sha256_bytes, sha256_file, write_json

SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
# Release tags of OpenStack projects: 32.1.0, 32.0.0.0rc1, 2024.1-eom.
VERSION_TAG_RE = re.compile(r"^\d+(\.\d+)+((\.0)?(a|b|rc)\d+)?$")
EOL_TAG_RE = re.compile(r"^\d{4}\.\d-(eom|eol)$")
BRANCH_PREFIXES = ("stable/", "unmaintained/", "feature/", "bugfix/")


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
    """Where one pristine tree came from; one entry of sources.json."""

    component: str
    ref: str
    kind: str  # branch | tag | sha
    method: str  # git | sdist
    origin: str  # git URL or sdist URL
    commit: str  # HEAD of the pristine tree
    upstream_revision: str | None  # upstream git commit (full SHA for git, pbr's for sdist)
    version: str | None  # package version where known (tag or sdist)
    sdist_sha256: str | None = None
    tree: str = ""


def source_tree(project: Project, release: str, component: str) -> Path:
    return project.settings.workdir / "src" / release / component


def sources_file(project: Project, release: str) -> Path:
    return project.settings.workdir / release / "sources.json"


def load_sources(project: Project, release: str) -> dict[str, SourceRecord]:
    data = read_json(sources_file(project, release)) or {}
    return {name: SourceRecord(**entry) for name, entry in data.get("components", {}).items()}


# --- git mirrors -----------------------------------------------------------------


def mirror_path(project: Project, component: Component) -> Path:
    # Keyed by URL as well as name: two configurations (or tests) pointing the
    # same component at different remotes must not share one mirror.
    url_key = hash_inputs(component.url)[:10]
    return project.settings.cache_dir / "git" / f"{component.name}-{url_key}.git"


def _ensure_mirror(path: Path) -> Path:
    if not (path / "HEAD").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        git("init", "--quiet", "--bare", str(tmp))
        tmp.rename(path)
    return path


def _fetch(mirror: Path, url: str, *refspecs: str, depth: int | None = 1) -> None:
    args = ["fetch", "--quiet", "--no-tags", "--force"]
    if depth:
        args.append(f"--depth={depth}")
    git(*args, url, *refspecs, cwd=mirror)


def _remote_refs(url: str, name: str) -> dict[str, str]:
    try:
        out = git("ls-remote", url, f"refs/heads/{name}", f"refs/tags/{name}", f"refs/tags/{name}^{{}}")
    except GitError as exc:
        raise FetchError(f"cannot query {url}: {exc.stderr.strip()}", hint="check the URL and network access, or use --offline") from None
    refs = {}
    for line in out.splitlines():
        sha, _, refname = line.partition("\t")
        refs[refname] = sha
    return refs


def _resolve_git(project: Project, component: Component, mirror: Path, offline: bool) -> tuple[str, RefKind]:
    """Make the mirror hold the commit the ref names; return (full SHA, kind)."""
    ref, url = component.ref, component.url
    kind = classify_ref(ref)

    def fail(detail: str) -> FetchError:
        return FetchError(
            f"{component.name} ({component.release}): ref {ref!r} {detail} at {url}",
            hint=f"check releases/{component.release}/source-refs.yaml",
        )

    if kind is RefKind.SHA:
        sha = rev_parse(mirror, ref)
        if sha:
            return sha, kind
        if offline:
            raise fail("is not in the local mirror and --offline forbids fetching")
        if len(ref) == 40:
            try:
                _fetch(mirror, url, f"{ref}:refs/pinned/{ref}")
                return ref, kind
            except GitError:
                pass  # server refuses fetching by SHA: fall back to full history
        try:
            _fetch(mirror, url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", depth=None)
        except GitError as exc:
            raise fail(f"could not be fetched: {exc.stderr.strip()}") from None
        sha = rev_parse(mirror, ref)
        if not sha:
            raise fail("names no commit")
        git("update-ref", f"refs/pinned/{sha}", sha, cwd=mirror)
        return sha, kind

    if kind in (RefKind.TAG, RefKind.NAME):
        sha = rev_parse(mirror, f"refs/tags/{ref}")
        if sha:
            return sha, RefKind.TAG
    if offline:
        sha = rev_parse(mirror, f"refs/heads/{ref}")
        if sha:
            return sha, RefKind.BRANCH
        raise fail("is not in the local mirror and --offline forbids fetching")

    remote = _remote_refs(url, ref)
    if f"refs/tags/{ref}" in remote:
        try:
            _fetch(mirror, url, f"+refs/tags/{ref}:refs/tags/{ref}")
        except GitError as exc:
            raise fail(f"could not be fetched: {exc.stderr.strip()}") from None
        sha = rev_parse(mirror, f"refs/tags/{ref}")
        assert sha
        return sha, RefKind.TAG
    if f"refs/heads/{ref}" in remote:
        sha = remote[f"refs/heads/{ref}"]
        if rev_parse(mirror, sha) != sha:
            try:
                _fetch(mirror, url, f"+refs/heads/{ref}:refs/heads/{ref}")
            except GitError as exc:
                raise fail(f"could not be fetched: {exc.stderr.strip()}") from None
        else:
            git("update-ref", f"refs/heads/{ref}", sha, cwd=mirror)
        return sha, RefKind.BRANCH
    raise fail("is neither a branch nor a tag (for a commit, give its SHA)")


def pbr_dev_version(tag: str, distance: int) -> str:
    """pbr's version for a commit ``distance`` commits after release tag ``tag``."""
    if distance == 0:
        return tag
    parts = tag.split(".")
    parts[-1] = str(int(parts[-1]) + 1)
    return ".".join(parts) + f".dev{distance}"


def _dev_version(mirror: Path, component: Component, sha: str, kind: RefKind) -> str | None:
    """Version of an untagged commit: pbr-style, from the nearest release tag in its history.

    Shallow mirrors lack that history, so the commit's history is deepened
    step by step until it reaches a commit that a release tag (as listed by one
    ``git ls-remote --tags``) points to.
    """
    try:
        listing = git("ls-remote", "--tags", component.url)
    except GitError:
        return None
    tag_of: dict[str, str] = {}
    for line in listing.splitlines():
        target, _, ref = line.partition("\t")
        name = ref.removeprefix("refs/tags/").removesuffix("^{}")
        if release_version(name) is not None and (ref.endswith("^{}") or target not in tag_of):
            tag_of[target] = name
    refspec = f"+refs/heads/{component.ref}:refs/heads/{component.ref}" if kind is RefKind.BRANCH else f"{sha}:refs/pinned/{sha}"
    seen = -1
    for depth in (50, 250, 1000, 5000):
        commits = git("rev-list", sha, cwd=mirror).split()
        for commit in commits:
            if commit in tag_of:
                distance = int(git("rev-list", "--count", f"{commit}..{sha}", cwd=mirror).strip())
                return pbr_dev_version(tag_of[commit], distance)
        if len(commits) == seen:
            break  # the whole history is here and holds no release tag
        seen = len(commits)
        try:
            _fetch(mirror, component.url, refspec, depth=depth)
        except GitError:
            break
    return None


def _branch_tip(component: Component) -> str | None:
    """One lightweight remote query: the current SHA of a branch ref."""
    remote = _remote_refs(component.url, component.ref)
    return remote.get(f"refs/heads/{component.ref}")


def _tree_from_mirror(mirror: Path, sha: str, tag: str | None, dest: Path) -> None:
    git("init", "--quiet", str(dest))
    refspecs = [sha]
    if tag:
        # pbr derives the version from the tag: keep it in the tree.
        refspecs.append(f"+refs/tags/{tag}:refs/tags/{tag}")
    git("fetch", "--quiet", "--no-tags", "--depth=1", mirror.as_uri(), *refspecs, cwd=dest)
    git("checkout", "--quiet", "--detach", sha, cwd=dest)


# --- sdists ----------------------------------------------------------------------


@dataclass(frozen=True)
class SdistFile:
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


def _index_files(index_url: str, project_name: str, ca_bundle: Path | None) -> list[SdistFile]:
    page = f"{index_url}/{canonicalize_name(project_name)}/"
    body, final_url = fetch_url(page, ca_bundle, accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1")
    files: list[SdistFile] = []
    text = body.decode("utf-8", "replace")
    if text.lstrip().startswith("{"):
        for entry in json.loads(text).get("files", []):
            sha = entry.get("hashes", {}).get("sha256")
            if sha:
                files.append(SdistFile(entry["filename"], urljoin(final_url, entry["url"]), sha))
    else:
        parser = _LinkParser()
        parser.feed(text)
        for href in parser.links:
            url, _, fragment = href.partition("#")
            if fragment.startswith("sha256="):
                files.append(SdistFile(url.rsplit("/", 1)[-1], urljoin(final_url, url), fragment[7:]))
    return files


def find_sdist(files: list[SdistFile], project_name: str, version: Version) -> SdistFile | None:
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


def _cached_sdist(project: Project, component: Component, version: Version, offline: bool, required: bool) -> tuple[Path, SdistFile] | None:
    """The verified sdist from the cache, downloading it if needed; None if the index lacks it."""
    cache = project.settings.cache_dir / "sdist"
    record_path = cache / f"{canonicalize_name(component.pypi_name)}-{version}.json"
    record = read_json(record_path)
    if record:
        entry = SdistFile(**record)
        path = cache / entry.filename
        if path.exists() and sha256_file(path) == entry.sha256:
            return path, entry
    if offline:
        if required:
            raise FetchError(f"{component.name} {version}: sdist not in the cache and --offline forbids downloading")
        return None
    files = _index_files(project.settings.index_url, component.pypi_name, project.settings.ca_bundle)
    entry = find_sdist(files, component.pypi_name, version)
    if entry is None:
        if required:
            raise FetchError(
                f"{component.name} ({component.release}): no sdist of {component.pypi_name} {version} on {project.settings.index_url}",
                hint="use source_mode git, or check pipeline.pypi_names for the distribution name",
            )
        return None
    body, _ = fetch_url(entry.url, project.settings.ca_bundle)
    actual = sha256_bytes(body)
    if actual != entry.sha256:
        raise IntegrityError(
            f"{entry.url}: sha256 is {actual}, the index publishes {entry.sha256}",
            hint="the download was corrupted or tampered with; retry, and check any proxy in between",
        )
    path = cache / entry.filename
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(body)
    tmp.replace(path)
    write_json(record_path, asdict(entry))
    return path, entry


def _tree_from_sdist(archive: Path, entry: SdistFile, version: Version, dest: Path) -> str | None:
    """Unpack into ``dest`` as a one-commit git repository tagged with the version.

    A git repository (rather than a plain directory) makes pbr list files with
    ``git ls-files``, so files that patches add reach the wheel, and the tag
    gives pbr the right version.  Returns pbr's upstream revision if recorded.
    """
    with tempfile.TemporaryDirectory(dir=dest.parent) as unpack:
        with tarfile.open(archive) as tar:
            tar.extractall(unpack, filter="data")
            # The newest member time is a reproducible commit date for the import.
            newest = max((int(m.mtime) for m in tar.getmembers()), default=0)
        tops = list(Path(unpack).iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise FetchError(f"{archive}: expected one top-level directory in the sdist")
        tops[0].rename(dest)
    revision = None
    for pbr_json in dest.glob("*.egg-info/pbr.json"):
        revision = (read_json(pbr_json) or {}).get("git_version")
    stamp = f"@{max(newest, 86400)} +0000"
    identity = {
        "GIT_AUTHOR_NAME": "openstack-patches", "GIT_AUTHOR_EMAIL": "sdist-import@openstack-patches.invalid",
        "GIT_COMMITTER_NAME": "openstack-patches", "GIT_COMMITTER_EMAIL": "sdist-import@openstack-patches.invalid",
        "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp,
    }
    git("init", "--quiet", str(dest))
    git("add", "--all", "--force", ".", cwd=dest)
    message = f"Import {entry.filename}\n\nSource: {entry.url}\nSHA256: {entry.sha256}\n"
    if revision:
        message += f"Upstream-Revision: {revision}\n"
    git("commit", "--quiet", "--no-verify", "--allow-empty", "-m", message, cwd=dest, env=identity)
    git("tag", str(version), cwd=dest)
    return revision


# --- the stage -------------------------------------------------------------------


def _use_sdist(project: Project, component: Component) -> Version | None:
    mode = project.settings.source_mode
    version = release_version(component.ref)
    if mode == "git" or version is None:
        return None
    return version


def fetch_component(project: Project, component: Component, offline: bool = False) -> tuple[SourceRecord, str]:
    """Bring one pristine tree up to date; return its record and what was done."""
    settings = project.settings
    offline = offline or settings.offline
    tree = source_tree(project, component.release, component.name)
    inputs = {
        "ref": component.ref, "url": component.url, "pypi_name": component.pypi_name,
        "mode": settings.source_mode, "index": settings.index_url,
    }
    stamp = Stamp(settings.workdir / ".stamps" / "fetch" / component.release / f"{component.name}.json")
    previous = stamp.current(hash_inputs(inputs))
    if previous and clean_at(tree, previous["commit"]):
        record = SourceRecord(**previous)
        if record.kind != RefKind.BRANCH.value or offline:
            return record, "up to date"
        if _branch_tip(component) == record.upstream_revision:
            return record, "up to date (branch unchanged)"

    version = _use_sdist(project, component)
    sdist = None
    if version is not None:
        sdist = _cached_sdist(project, component, version, offline, required=settings.source_mode == "sdist")
    if sdist is not None:
        archive, entry = sdist
        revisions: list[str | None] = []
        replace_dir(tree, lambda dest: revisions.append(_tree_from_sdist(archive, entry, version, dest)))
        record = SourceRecord(
            component=component.name, ref=component.ref, kind=RefKind.TAG.value, method="sdist",
            origin=entry.url, commit=git("rev-parse", "HEAD", cwd=tree).strip(),
            upstream_revision=revisions[0], version=str(version), sdist_sha256=entry.sha256, tree=str(tree),
        )
        action = f"sdist {entry.filename}"
    else:
        mirror = _ensure_mirror(mirror_path(project, component))
        sha, kind = _resolve_git(project, component, mirror, offline)
        tag = component.ref if kind is RefKind.TAG else None
        if not clean_at(tree, sha):
            replace_dir(tree, lambda dest: _tree_from_mirror(mirror, sha, tag, dest))
        if tag:
            version = str(release_version(tag)) if release_version(tag) else None
        else:
            version = None if offline else _dev_version(mirror, component, sha, kind)
        record = SourceRecord(
            component=component.name, ref=component.ref, kind=kind.value, method="git",
            origin=component.url, commit=sha, upstream_revision=sha, version=version,
            tree=str(tree),
        )
        action = f"git {kind.value} {component.ref} -> {sha[:12]}"
    stamp.record(hash_inputs(inputs), asdict(record))
    return record, action


def fetch(project: Project, release: str, names: list[str] | tuple[str, ...] = (), offline: bool = False) -> dict[str, SourceRecord]:
    """Fetch the named components of a release (all by default) and update sources.json."""
    components = project.components(release, names)
    records = load_sources(project, release)
    # Forget components that left source-refs.yaml.
    records = {k: v for k, v in records.items() if k in project.release(release).refs}
    for component in components:
        with console.step(f"fetch {release}/{component.name}") as outcome:
            record, outcome["status"] = fetch_component(project, component, offline)
        records[component.name] = record
    write_json(sources_file(project, release), {
        "release": release,
        "components": {name: asdict(rec) for name, rec in sorted(records.items())},
    })
    return {c.name: records[c.name] for c in components}


def package_version(record: SourceRecord) -> str:
    """The version pbr must give the installed package (PBR_VERSION)."""
    if record.version:
        return record.version
    console.warn(f"{record.component}: no release tag found in the history of {record.ref}; "
                 "versioning it 0.0.0.dev0 (pin a tag in source-refs.yaml for a real version)")
    return "0.0.0.dev0"
