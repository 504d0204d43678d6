"""Export stage: each prepared tree as a reproducible source archive, for tooling outside this project.

Owns ``<workdir>/export/<release>/<component>-<version>-p<N>-<short sha>.tar.gz``
(``N`` patches applied, the prepared tree's head) and the folder's
``SHA256SUMS``.  An archive holds the files of the prepared tree's head
commit (read from git, so nothing untracked slips in) under one top folder
of the archive's own name, and no ``.git``: a patched source is handed over,
not a repository.  Without ``.git`` pbr takes the version from ``PKG-INFO``
and the file list from ``*.egg-info/SOURCES.txt``, so for pbr projects both
are written from the tree (the sdist's own ``PKG-INFO`` is kept; the file
list always names every file of the tree, so files that patches add reach a
wheel built from the archive).  Same inputs, same bytes: entries sorted,
every mtime the head's commit date, owner 0/0 without names, modes 0644 or
0755, gzip without file name or timestamp.
"""

from __future__ import annotations

import configparser
import gzip
import io
import re
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import console, runner
from pipeline.core.files import (
    remove,
    sha256_bytes,
    sha256_file,
    write_atomic,
    write_if_changed,
)
from pipeline.core.git import git, text
from pipeline.core.locks import hold
from pipeline.core.releases import Project
from pipeline.core.stamps import Stamp
from pipeline.patches.records import PreparedTree
from pipeline.patches.series import patch as prepare_trees

FORMAT = 1  # bump when the archive layout changes: stamps of older archives then no longer match


@dataclass(frozen=True)
class Exported:
    component: str
    version: str
    patches: int
    head: str
    path: Path
    sha256: str
    action: str  # written | up to date


def archive_name(prepared: PreparedTree) -> str:
    return f"{prepared.component}-{prepared.source.version}-p{len(prepared.patches)}-{prepared.head[:12]}"


def _tree_files(repo: Path, commit: str) -> list[tuple[str, str, bytes]]:
    """(path, git mode, content) of every file of ``commit``; submodules (no content here) are left out."""
    entries = []
    for item in text("ls-tree", "-r", "-z", "--full-tree", commit, cwd=repo).split("\0"):
        if not item:
            continue
        meta, path = item.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind == "blob":
            entries.append((path, mode, sha))
    batch = git("cat-file", "--batch", cwd=repo, input="".join(f"{sha}\n" for _, _, sha in entries), binary=True)
    assert isinstance(batch, bytes)
    files, offset = [], 0
    for path, mode, _ in entries:
        header_end = batch.index(b"\n", offset)
        size = int(batch[offset:header_end].split()[2])
        start = header_end + 1
        files.append((path, mode, batch[start:start + size]))
        offset = start + size + 1
    return files


def _pbr_metadata(files: dict[str, bytes], version: str) -> dict[str, bytes]:
    """PKG-INFO and the egg-info file list pbr reads when there is no .git (nothing for other projects)."""
    setup_py = files.get("setup.py", b"")
    pyproject = files.get("pyproject.toml", b"")
    if b"pbr" not in setup_py and b"pbr.build" not in pyproject:
        return {}
    name = None
    if "setup.cfg" in files:
        parser = configparser.RawConfigParser()
        try:
            parser.read_string(files["setup.cfg"].decode("utf-8", "replace"))
            name = parser.get("metadata", "name", fallback=None)
        except configparser.Error:
            name = None
    if not name and pyproject:
        try:
            name = tomllib.loads(pyproject.decode("utf-8", "replace")).get("project", {}).get("name")
        except tomllib.TOMLDecodeError:
            name = None
    if not name:
        return {}
    added = {}
    if "PKG-INFO" not in files:
        added["PKG-INFO"] = f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\n".encode()
    # setuptools' egg-info folder name; an sdist's own folder is reused as it is.
    egg_info = next((p.split("/", 1)[0] for p in sorted(files) if re.fullmatch(r"[^/]+\.egg-info/PKG-INFO", p)),
                    re.sub(r"[^A-Za-z0-9.]+", "_", name) + ".egg-info")
    sources = f"{egg_info}/SOURCES.txt"
    listing = sorted({*files, *added, sources})
    added[sources] = "".join(f"{p}\n" for p in listing).encode()
    return added


def build_archive(repo: Path, commit: str, top: str, mtime: int, version: str) -> bytes:
    """The archive's bytes: a function of the commit's files, ``top``, ``mtime`` and ``version`` only."""
    found = _tree_files(repo, commit)
    modes = {path: mode for path, mode, _ in found}
    files = {path: data for path, _, data in found}
    files.update(_pbr_metadata(files, version))
    directories = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
    raw = io.BytesIO()

    def entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(f"{top}/{name}" if name else top)
        info.type, info.mode, info.size, info.linkname, info.mtime = kind, mode, size, link, mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(["", *directories, *files]):
            if name == "" or name in directories:
                tar.addfile(entry(name, tarfile.DIRTYPE, 0o755))
            elif modes.get(name) == "120000":
                tar.addfile(entry(name, tarfile.SYMTYPE, 0o777, link=files[name].decode("utf-8", "surrogateescape")))
            else:
                data = files[name]
                tar.addfile(entry(name, tarfile.REGTYPE, 0o755 if modes.get(name) == "100755" else 0o644, len(data)),
                            io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _stale(directory: Path, component: str, keep: str) -> list[Path]:
    pattern = re.compile(rf"{re.escape(component)}-[^-/]+-p\d+-[0-9a-f]{{12}}\.tar\.gz")
    return [p for p in directory.glob("*.tar.gz") if pattern.fullmatch(p.name) and p.name != keep]


def export_one(project: Project, prepared: PreparedTree) -> Exported:
    layout = project.layout
    stem = archive_name(prepared)
    path = layout.export_dir(prepared.release) / f"{stem}.tar.gz"
    inputs = {"format": FORMAT, "head": prepared.head, "version": prepared.source.version, "stem": stem,
              "mtime": prepared.head_date}
    stamp = Stamp(layout.stamp("export", prepared.release, prepared.component))
    previous = stamp.current(inputs)
    if previous and path.exists() and sha256_file(path) == previous["sha256"]:
        digest, action = previous["sha256"], "up to date"
    else:
        stamp.clear()
        data = build_archive(layout.resolve(prepared.tree), prepared.head, stem, prepared.head_date,
                             prepared.source.version)
        write_atomic(path, data)
        digest, action = sha256_bytes(data), "written"
        stamp.record(inputs, {"sha256": digest})
    for old in _stale(path.parent, prepared.component, path.name):
        remove(old)  # an archive of an earlier state of the series
    return Exported(prepared.component, prepared.source.version, len(prepared.patches), prepared.head, path,
                    digest, action)


def write_sums(project: Project, release: str) -> Path:
    """``SHA256SUMS`` of every archive in the release's export folder (``sha256sum -c`` reads it)."""
    directory = project.layout.export_dir(release)
    lines = [f"{sha256_file(p)}  {p.name}\n" for p in sorted(directory.glob("*.tar.gz"))]
    path = project.layout.export_sums(release)
    write_if_changed(path, "".join(lines))
    return path


def export(project: Project, release: str, names: list[str] | tuple[str, ...] = (), jobs: int = 1) -> list[Exported]:
    """Fetch, patch and archive the named components of a release (all by default), ``jobs`` at a time."""
    project.release(release)
    with hold(project.layout.lock(release), f"the work directory of {release}"):
        prepared = prepare_trees(project, release, names, jobs)
        # zlib frees the GIL: archives are made side by side
        exported = runner.map(lambda tree: export_one(project, tree), prepared, jobs, lambda tree: tree.component)
        write_sums(project, release)
    return exported


def as_report(project: Project, release: str, exported: list[Exported]) -> console.Report:
    """What ``invoke export`` prints: a row per archive (the table shortens the hash), then the checksums file."""
    rows = [{"component": e.component, "version": e.version, "patches": e.patches, "archive": project.layout.rel(e.path),
             "sha256": e.sha256, "action": e.action} for e in exported]
    return console.Report.of([console.Column("component"), console.Column("version"), console.Column("patches"),
                              console.Column("archive"), console.Column("sha256", lambda r: r["sha256"][:16]),
                              console.Column("result", "action")], rows,
                             footer=f"checksums: {project.layout.rel(project.layout.export_sums(release))}")
