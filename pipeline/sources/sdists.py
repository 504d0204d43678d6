"""Release tags from the package index: the sdist of a version, found, downloaded hash-checked, unpacked.

Owns reading a project's files from a PEP 503/691 index (``index_files``),
choosing the sdist of a version, the hash-checked download cache
(``cached_download``: a corrupt entry is fetched again, or with
``--offline`` named), and a pristine tree from an sdist imported as a
one-commit git repository (so pbr lists the files a patch adds).
"""

from __future__ import annotations

import email.parser
import json
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pipeline.core import console, locks
from pipeline.core.errors import CacheCorruptError, FetchError, IntegrityError
from pipeline.core.files import (
    read_json,
    sha256_bytes,
    sha256_file,
    write_atomic,
    write_json,
)
from pipeline.core.git import text
from pipeline.core.net import fetch_url
from pipeline.core.redact import public_url
from pipeline.core.releases import Component, Project


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
