"""Hotpatch: try a series on a running container before an image is built.

Owns copying the files that a service's patches, and those of the patched
libraries its image holds, change into a running container's venv through
the Docker Engine API (``put_archive``), and the way back.  It refuses, before
anything is copied, a container that is not running or whose image is not
of that service, release and upstream version (the image's
``org.opencontainers.image.title``/``.version`` and
``io.openstack-patches.release`` labels), or whose libraries are at other
versions than the release's (``io.openstack-patches.libraries``).  Where a
file goes is read from the installed distribution's own file list (a file
it installed, or a new file in a folder it installs into), by running the
container's Python; files the distribution does not install (tests outside
the package, release notes) are reported and skipped.

Undo: before writing, the originals are saved with ``get_archive`` into
``<workdir>/hotpatch/<container id>/originals.tar`` (a file saved by an
earlier hotpatch of the same container is kept: the archive always holds
the image's own version), with ``hotpatch.json`` naming every file written;
the result says which commands put them back.  The image is never changed.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.core import console
from pipeline.core.errors import HotpatchError
from pipeline.core.files import read_json, write_atomic, write_json
from pipeline.core.locks import hold
from pipeline.core.releases import Project
from pipeline.image.engine import connect, engine_info
from pipeline.patches.records import PreparedTree
from pipeline.patches.series import patch as prepare_trees
from pipeline.sources.fetch import SourceRecord, fetch_component

LABEL_TITLE = "org.opencontainers.image.title"
LABEL_VERSION = "org.opencontainers.image.version"
LABEL_RELEASE = "io.openstack-patches.release"
LABEL_LIBRARIES = "io.openstack-patches.libraries"
DEFAULT_VENV = "/var/lib/openstack"

# Runs in the container with its own Python: where each distribution's files are.
LOCATE_SCRIPT = r"""
import importlib.metadata as m, json, sys, sysconfig
out = {"site": sysconfig.get_paths()["purelib"], "dists": {}}
for name in sys.argv[1:]:
    try:
        dist = m.distribution(name)
    except m.PackageNotFoundError:
        continue
    out["dists"][name] = {"version": dist.version, "files": [str(f) for f in dist.files or []]}
print(json.dumps(out))
"""


@dataclass(frozen=True)
class HotFile:
    component: str
    path: str  # in the source tree
    action: str  # replaced | added | unchanged | not installed | deleted by a patch (left in place)
    target: str | None = None  # absolute path in the container


@dataclass
class HotpatchResult:
    container: str  # as the user named it
    container_id: str
    image: str
    release: str
    service: str
    files: list[HotFile] = field(default_factory=list)
    undo_dir: Path | None = None

    @property
    def written(self) -> list[HotFile]:
        return [f for f in self.files if f.action in ("replaced", "added")]

    def to_dict(self) -> dict:
        return {"container": self.container, "container_id": self.container_id, "image": self.image,
                "release": self.release, "service": self.service,
                "files": [f.__dict__ for f in self.files], "undo": undo_commands(self)}


def _labels(client, container: dict) -> dict[str, str]:
    image = client.inspect_image(container["Image"])
    return (image.get("Config") or {}).get("Labels") or {}


def _libraries(labels: dict[str, str]) -> dict[str, str]:
    """name -> version of the patched libraries the image was built with."""
    pairs = [item.split("==", 1) for item in labels.get(LABEL_LIBRARIES, "").split(",") if "==" in item]
    return dict(pairs)


def _refuse(what: str, hint: str) -> HotpatchError:
    return HotpatchError(f"hotpatch refused: {what}; nothing was copied", hint=hint)


def check_image(name: str, labels: dict[str, str], release: str, service: str) -> None:
    """The container's image must be an image of ``service`` for ``release`` (before anything is fetched)."""
    if LABEL_RELEASE not in labels or LABEL_TITLE not in labels:
        raise _refuse(f"the image of container {name} is not an openstack-patches image (it has no {LABEL_RELEASE} "
                      f"and {LABEL_TITLE} labels)", "hotpatch containers of images that invoke build made")
    found = (labels[LABEL_TITLE], labels[LABEL_RELEASE])
    if found != (service, release):
        raise _refuse(f"container {name} runs {found[0]} of release {found[1]}, not {service} of {release}",
                      f"use --release {found[1]} --service {found[0]}, or name a container of {service} ({release})")


def check_versions(name: str, labels: dict[str, str], sources: dict[str, SourceRecord], service: str) -> None:
    """Upstream versions must match the release's, or the patched files would mix two versions."""
    wanted = {service: labels.get(LABEL_VERSION, "?"), **_libraries(labels)}
    for component, version in wanted.items():
        source = sources.get(component)
        if source is not None and source.version != version:
            raise _refuse(f"container {name} has {component} {version}, the release's ref gives {source.version}",
                          f"build and run the current image (invoke build --release {source.release} --service {service}), "
                          f"or hotpatch a container of {component} {source.version}")


def _exec(client, container_id: str, command: list[str], what: str) -> bytes:
    exec_id = client.exec_create(container_id, command, stdout=True, stderr=True)["Id"]
    output = client.exec_start(exec_id, demux=True)
    status = client.exec_inspect(exec_id).get("ExitCode")
    out, err = output if isinstance(output, tuple) else (output, b"")
    if status != 0:
        raise HotpatchError(f"{what} failed in the container (exit {status}): "
                            f"{(err or out or b'').decode('utf-8', 'replace').strip()[-400:]}",
                            hint="the container must have the image's venv and its Python")
    return out or b""


def locate(client, container: dict, dists: list[str]) -> dict:
    env = dict(item.split("=", 1) for item in (container.get("Config") or {}).get("Env") or [] if "=" in item)
    python = f"{env.get('VIRTUAL_ENV', DEFAULT_VENV)}/bin/python"
    return json.loads(_exec(client, container["Id"], [python, "-c", LOCATE_SCRIPT, *dists], "reading the venv"))


def _targets(project: Project, tree: PreparedTree, installed: dict, site: str) -> list[HotFile]:
    """Where each file the series changes goes in the container, or why it does not."""
    files = set(installed["files"])
    folders = {str(PurePosixPath(f).parent) for f in files}
    root = project.layout.resolve(tree.tree)
    out = []
    for path in dict.fromkeys(p for patch in tree.patches for p in patch.files):
        exists = (root / path).is_file()
        if path in files or (exists and str(PurePosixPath(path).parent) in folders):
            action = "replace" if exists else "deleted by a patch (left in place)"
            out.append(HotFile(tree.component, path, action, f"{site}/{path}"))
        else:
            out.append(HotFile(tree.component, path, "not installed"))
    return out


def _original(client, container_id: str, target: str) -> tuple[tarfile.TarInfo, bytes] | None:
    """The file as the container has it (its tar entry and bytes), or None when it does not exist."""
    import docker.errors

    try:
        stream, _ = client.get_archive(container_id, target)
    except docker.errors.NotFound:
        return None
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        content = tar.extractfile(member) if member is not None and member.isfile() else None
        if member is None or content is None:
            return None
        return member, content.read()


def _save_originals(directory: Path, originals: dict[str, tuple[tarfile.TarInfo, bytes]]) -> None:
    """Add originals to the undo archive; files saved by an earlier hotpatch keep their first (the image's) version."""
    archive = directory / "originals.tar"
    kept: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    if archive.exists():
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                content = tar.extractfile(member)
                assert content is not None, f"{archive}: {member.name} is not a file"  # written below: files only
                kept[member.name] = (member, content.read())
    for target, (member, data) in originals.items():
        name = target.lstrip("/")
        if name not in kept:
            member.name = name
            kept[name] = (member, data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(kept):
            member, data = kept[name]
            tar.addfile(member, io.BytesIO(data))
    write_atomic(archive, buffer.getvalue())


def _running_container(client, name: str, where: str) -> dict:
    import docker.errors

    try:
        container = client.inspect_container(name)
    except docker.errors.NotFound:
        raise _refuse(f"no container named {name} on the engine at {where}",
                      "give the name or ID that `docker ps` shows") from None
    state = container.get("State") or {}
    if not state.get("Running"):
        raise _refuse(f"container {name} is not running ({state.get('Status', 'unknown')})",
                      f"start it first (docker start {name})")
    return container


def _payload(client, project: Project, container_id: str, planned: list[HotFile], trees: dict[str, PreparedTree],
             ) -> tuple[bytes, list[HotFile], dict[str, tuple[tarfile.TarInfo, bytes]]]:
    """The tar to put into the container, what happens to each file, and the originals it replaces."""
    files: list[HotFile] = []
    originals: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    payload = io.BytesIO()
    now = int(time.time())  # a new mtime: byte code compiled from the image's files is not reused
    with tarfile.open(fileobj=payload, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in planned:
            if item.action != "replace":
                files.append(item)
                continue
            assert item.target is not None  # a file to replace has its place in the container
            source = project.layout.resolve(trees[item.component].tree) / item.path
            data = source.read_bytes()
            original = _original(client, container_id, item.target)
            if original is not None and original[1] == data:
                files.append(HotFile(item.component, item.path, "unchanged", item.target))
                continue
            info = tarfile.TarInfo(item.target.lstrip("/"))
            info.size, info.mtime = len(data), now
            if original is not None:  # owner and mode as the image has them
                info.mode, info.uid, info.gid = original[0].mode, original[0].uid, original[0].gid
                originals[item.target] = original
            else:
                info.mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data))
            files.append(HotFile(item.component, item.path, "replaced" if original is not None else "added", item.target))
    return payload.getvalue(), files, originals


def hotpatch(project: Project, release: str, service: str, name: str) -> HotpatchResult:
    import docker.errors

    rel = project.services(release, [service])
    client = connect(project.settings)  # it says which engine answered
    where = f"{project.settings.engine.description} ({engine_info(client)['name']})"
    container = _running_container(client, name, where)
    labels = _labels(client, container)
    check_image(name, labels, release, service)
    components = [service, *[lib for lib in _libraries(labels) if lib in rel.refs]]
    with hold(project.layout.lock(release), f"the work directory of {release}"):
        sources = {c: fetch_component(project, project.component(release, c))[0] for c in components}
        check_versions(name, labels, sources, service)  # before any patch is applied
        trees = {t.component: t for t in prepare_trees(project, release, components)}

    dists = {c: project.settings.pypi_name(c) for c in components}
    venv = locate(client, container, list(dists.values()))
    planned: list[HotFile] = []
    for component in (c for c in components if trees[c].patches):
        installed = venv["dists"].get(dists[component])
        if installed is None:
            raise _refuse(f"container {name} has no {dists[component]} installed in its venv",
                          "hotpatch a container of an image that invoke build made")
        planned.extend(_targets(project, trees[component], installed, venv["site"]))
    payload, files, originals = _payload(client, project, container["Id"], planned, trees)
    result = HotpatchResult(name, container["Id"], container["Config"].get("Image", container["Image"]), release,
                            service, files)

    directory = project.layout.hotpatch_dir(container["Id"])
    record_path = directory / "hotpatch.json"
    previous = read_json(record_path) or {}
    if not result.written:
        result.undo_dir = directory if previous else None  # an earlier hotpatch is still there to undo
        return result
    # A file an earlier hotpatch added is still one to remove on undo, not one to restore.
    added = set(previous.get("added", [])) | {f.target for f in result.written if f.action == "added"}
    originals = {target: entry for target, entry in originals.items() if target not in added}
    # The way back is on disk before the container is touched.
    _save_originals(directory, originals)
    write_json(record_path, {"container": name, "container_id": container["Id"], "image": result.image,
                             "release": release, "service": service,
                             "replaced": sorted(set(previous.get("replaced", [])) | set(originals)),
                             "added": sorted(added)})
    try:
        client.put_archive(container["Id"], "/", payload)
    except docker.errors.APIError as exc:
        raise HotpatchError(f"copying into container {name} failed: {exc.explanation or exc}",
                            hint="a read-only root file system cannot be hotpatched; rebuild the image instead") from None
    result.undo_dir = directory
    return result


def undo_commands(result: HotpatchResult) -> list[str]:
    if result.undo_dir is None:
        return []
    record = read_json(result.undo_dir / "hotpatch.json") or {}
    commands = []
    if record.get("replaced"):
        commands.append(f"docker cp - {result.container}:/ < {result.undo_dir / 'originals.tar'}")
    if record.get("added"):
        commands.append(f"docker exec -u root {result.container} rm -f {' '.join(record['added'])}")
    return commands


def describe_undo(project: Project, result: HotpatchResult) -> str:
    if result.undo_dir is None:
        return "nothing was copied: the container has these files from its image"
    copied = (f"{len(result.written)} file(s) copied into {result.container}" if result.written
              else f"nothing copied now: {result.container} has these files from an earlier hotpatch")
    lines = [f"{copied}; restart its processes to load them (docker restart {result.container} keeps the files).",
             "undo (back to the image's files; the originals are saved in "
             f"{project.layout.rel(result.undo_dir)}/):"]
    lines += [f"  {command}" for command in undo_commands(result)]
    lines.append(f"  docker restart {result.container}")
    lines.append("or recreate the container from its image: that drops the hotpatch as well.")
    return "\n".join(lines)


def as_report(project: Project, result: HotpatchResult) -> console.Report:
    """What ``invoke hotpatch`` prints: the result as JSON; a row per file, then how to undo it."""
    rows = [{"component": f.component, "path": f.path, "action": f.action, "target": f.target} for f in result.files]
    table = console.Table([console.Column("component"), console.Column("file", "path"), console.Column("action"),
                           console.Column("in the container", lambda r: r["target"] or "-")], rows,
                          empty="the patches change no file")
    return console.Report(result.to_dict(), [table, describe_undo(project, result)])
