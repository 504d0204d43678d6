"""Upstream upper-constraints: the release's pinned snapshot in the repository, or a download, checked.

Owns ``releases/<R>/upper-constraints.txt`` (its header records the source and
the sha256 of its body, checked on every use; ``invoke constraints --update``
writes it), downloads from ``constraints_url`` cached under
``cache_dir/constraints`` (checked against the hash recorded at download),
and the check that a file is a whole constraints file.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from pipeline.core import console
from pipeline.core.errors import (
    CacheCorruptError,
    ConfigError,
    FetchError,
)
from pipeline.core.files import (
    read_json,
    sha256_bytes,
    write_atomic,
    write_json,
)
from pipeline.core.net import read_local_or_fetch
from pipeline.core.redact import public_url
from pipeline.core.releases import Project
from pipeline.core.settings import local_to_url

SNAPSHOT_FIELD_RE = re.compile(r"^# (source|note|fetched|sha256): (.*)$")


SNAPSHOT_TITLE = "# upper-constraints snapshot"


def validate(text: str, where: str) -> str | None:
    """Why ``text`` is not a whole upper-constraints file (empty, cut off, not pins), or None."""
    if not text.strip():
        return "it is empty"
    if not text.endswith("\n"):
        return "it does not end with a newline (cut off?)"
    pins = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            req = Requirement(stripped)
        except InvalidRequirement:
            return f"line {number} is not a pin: {stripped[:60]!r}"
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator not in ("===", "=="):
            return f"line {number} is not an exact pin: {stripped[:60]!r}"
        pins += 1
    if pins == 0:
        return "it holds no pins"
    return None


def constraints_url(project: Project, release: str) -> str:
    """The release's ``constraints_url`` (release.yaml, else settings), as a URL."""
    rel = project.release(release)
    return local_to_url((rel.constraints_url or project.settings.constraints_url).format(release=release),
                        project.settings.root)


def _unreachable_hint(release: str) -> str:
    return (f"releases/{release}/ has no upper-constraints.txt snapshot; point constraints_url at a reachable copy "
            f"(e.g. INVOKE_PIPELINE_CONSTRAINTS_URL=file:///srv/upper-constraints/{{release}}.txt) and run "
            f"`invoke constraints --release {release} --update` to pin a snapshot in the repository")


def _download(project: Project, release: str, url: str, hint: str | None = None) -> bytes:
    try:
        body = read_local_or_fetch(url, project.network, what=f"upper-constraints of {release}")
    except FetchError as error:
        raise FetchError(error.message, hint=hint or _unreachable_hint(release)) from None
    problem = validate(body.decode("utf-8", "replace"), url)
    if problem:
        raise FetchError(f"{public_url(url)}: not a whole upper-constraints file: {problem}",
                         hint=hint or "check constraints_url; the download may have been cut off (retry)")
    return body


def split_snapshot(text: str) -> tuple[dict[str, str], str]:
    """(header fields, body) of a snapshot written by ``update_snapshot``; a plain file has no fields."""
    lines = text.splitlines(keepends=True)
    if not lines or not lines[0].startswith(SNAPSHOT_TITLE):
        return {}, text
    fields: dict[str, str] = {}
    index = 1
    while index < len(lines) and (m := SNAPSHOT_FIELD_RE.match(lines[index].rstrip("\n"))):
        fields[m.group(1)] = m.group(2)
        index += 1
    return fields, "".join(lines[index:])


def _read_snapshot(project: Project, release: str, path: Path) -> tuple[str, str]:
    rel = project.layout.repo_rel(path)
    fields, body = split_snapshot(path.read_text(encoding="utf-8"))
    expected = fields.get("sha256")
    if expected and sha256_bytes(body.encode()) != expected:
        raise ConfigError(f"{rel}: the snapshot's content does not match the sha256 in its header (edited or cut off)",
                          hint=f"restore it from git, or refresh it: invoke constraints --release {release} --update")
    problem = validate(body, rel)
    if problem:
        raise ConfigError(f"{rel}: not a whole upper-constraints file: {problem}",
                          hint=f"restore it from git, or refresh it: invoke constraints --release {release} --update")
    source = fields.get("source", "")
    return body, f"{rel}" + (f" (snapshot of {source})" if source else "")


def upstream_text(project: Project, release: str) -> tuple[str, str]:
    """(text, where it came from): the snapshot if the repository has one, else the URL (cached, checked)."""
    snapshot = project.layout.constraints_snapshot(release)
    if snapshot.exists():
        return _read_snapshot(project, release, snapshot)
    url = constraints_url(project, release)
    shown = public_url(url)
    cache_dir = project.layout.constraints_cache()
    key = sha256_bytes(url.encode())[:12]
    cache, record_path = cache_dir / f"{release}-{key}.txt", cache_dir / f"{release}-{key}.json"
    record = read_json(record_path)
    if cache.exists():
        body = cache.read_bytes()
        problem = None
        if not isinstance(record, dict) or record.get("sha256") != sha256_bytes(body):
            problem = "its hash is not the one recorded at download"
        else:
            problem = validate(body.decode("utf-8", "replace"), str(cache))
        if problem is None:
            return body.decode("utf-8"), shown
        if project.settings.offline:
            raise CacheCorruptError(f"the cached upper-constraints {cache} of {release} are corrupt: {problem}",
                                    hint="run once without --offline: they are then downloaded again")
        console.note(f"the cached upper-constraints {cache} are corrupt ({problem}); downloading them again")
    elif project.settings.offline and not url.startswith("file:"):
        raise FetchError(f"upper-constraints of {release} are not in the cache, and offline mode forbids downloading {shown}",
                         hint=_unreachable_hint(release))
    body = _download(project, release, url)
    write_atomic(cache, body)
    write_json(record_path, {"url": shown, "sha256": sha256_bytes(body),
                             "fetched": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
    return body.decode("utf-8"), shown


def update_snapshot(project: Project, release: str, url: str | None = None, note: str | None = None) -> Path:
    """Write or refresh ``releases/<release>/upper-constraints.txt`` from ``url`` (default constraints_url)."""
    source = local_to_url(url, project.settings.root) if url else constraints_url(project, release)
    snapshot = project.layout.constraints_snapshot(release)
    unchanged = f"{project.layout.repo_rel(snapshot)} is unchanged" if snapshot.exists() else "no snapshot was written"
    body = _download(project, release, source, hint=f"check {'--from' if url else 'constraints_url'} (a URL, or a "
                                                    f"file path); {unchanged}").decode("utf-8")
    fetched = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    lines = [f"{SNAPSHOT_TITLE} for OpenStack {release}, written by `invoke constraints --update`.",
             f"# source: {public_url(source)}"]
    if note:
        lines.append(f"# note: {note}")
    lines += [f"# fetched: {fetched}", f"# sha256: {sha256_bytes(body.encode())}"]
    write_atomic(snapshot, "\n".join(lines) + "\n" + body)
    return snapshot
