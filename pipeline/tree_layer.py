"""The image layer of a patched tree: its wheel, installed into the image's venv, as archives a build ADDs.

Owns turning the wheel of a patched tree (``tree_wheel``) into what a service
image build adds for it: ``layer.tar``, every file the install writes at its
path in the image (the package under site-packages, its dist-info, its
entry-point scripts, its data files), and ``metadata.tar``, the dist-info's
METADATA and WHEEL alone (what ``uv pip check`` reads).  The install is
pypa/installer's, with the image venv's interpreter in the scripts'
shebangs; every entry is owned by root, has one fixed mtime and a normal
mode, in a fixed order: the same wheel gives the same bytes, so the same
image layer on any engine, in any service image of the release.

The archive holds the byte code of the tree's modules too (``bytecode``:
made by the image's own Python, kept per module, so a code change compiles
only the modules it changed): no build step compiles, and one ``ADD`` is
the tree's whole layer.

Why not install in a build stage, as the release layers do: a stage costs a
container, the commit of the installed files, and a ``COPY --from`` that
copies and commits every file once more (on keystone: 2.9 s for the stage
and 1.8 s for the copy, against 0.6 s for the ``ADD`` of the archive); a
``RUN`` that compiles after the ``ADD`` costs a container and a commit too
(1.8 s), and compiles every module again.
Archives are content-addressed by their inputs under ``<cache>/tree-layers/``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import json
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from . import console, locks
from .bytecode import ByteCode
from .config import Project
from .errors import ImageBuildError
from .files import clean_staging, hash_inputs, read_json, replace_dir, sha256_bytes
from .tree_wheel import REPRODUCIBLE_EPOCH, TreeWheel

LAYER_FORMAT = 5  # bump when the archives' content or form changes: every cached layer is then made again
VENV = "/var/lib/openstack"  # the image's venv (the release layers make it)
INSTALLER = b"openstack-patches\n"  # PEP 376: who installed the distribution (uv's own layers say uv)
EPOCH = int(REPRODUCIBLE_EPOCH)


def site_packages(python: str) -> str:
    """Where the image's venv installs modules."""
    return f"{VENV}/lib/python{python}/site-packages"


@dataclass(frozen=True)
class TreeLayer:
    wheel: TreeWheel  # what was installed
    directory: Path  # layer.tar and metadata.tar, alone in their directory of the cache
    sha256: str  # of layer.tar
    metadata_sha256: str
    dist_info: str  # e.g. keystone-28.0.0.dist-info
    bytecode: int  # how many of its modules' .pyc the layer holds

    @property
    def component(self) -> str:
        return self.wheel.component

    @property
    def archive(self) -> Path:
        return self.directory / "layer.tar"

    @property
    def metadata_archive(self) -> Path:
        return self.directory / "metadata.tar"

    def to_dict(self) -> dict:
        return {"sha256": self.sha256, "metadata_sha256": self.metadata_sha256, "dist_info": self.dist_info,
                "bytecode": self.bytecode}


def tree_layer(project: Project, wheel: TreeWheel, python: str, release: str, bytecode: ByteCode) -> TreeLayer:
    """The layer archives of ``wheel`` installed into the venv of an image with Python ``python``, whose
    interpreter ``bytecode`` compiles."""
    layout = project.layout
    # installer's version from its metadata: importing it costs a no-change build 0.08 s
    key = hash_inputs([LAYER_FORMAT, wheel.sha256, python, VENV, EPOCH, importlib.metadata.version("installer"),
                       bytecode.image_id])[:32]
    root = layout.tree_layers()
    directory = root / key
    with locks.hold(layout.cache_lock(f"tree-layer-{key}"), f"the image layer of {wheel.component}"):
        found = _cached(wheel, directory)
        if found is not None:
            return found
        clean_staging(root, key)
        made: list[TreeLayer] = []
        with console.step(f"layer {wheel.component} ({release})"):
            replace_dir(directory, lambda staging: made.append(_make(wheel, python, staging, bytecode)))
        return dataclasses.replace(made[0], directory=directory)


def _cached(wheel: TreeWheel, directory: Path) -> TreeLayer | None:
    """The cache entry, if whole: its archives as they were written (a damaged or replaced one is made again,
    never used).  Their size and mtime tell, not their hash: hashing every archive again cost a no-change
    `build --all` 0.15 s, and a file written again has a new mtime."""
    data = read_json(directory / "layer.json")
    if not isinstance(data, dict) or not {"sha256", "metadata_sha256", "dist_info", "bytecode", "stat"} <= data.keys():
        return None
    layer = TreeLayer(wheel, directory, data["sha256"], data["metadata_sha256"], data["dist_info"], data["bytecode"])
    if _stat(layer) != data["stat"]:
        return None
    return layer


def _stat(layer: TreeLayer) -> list[list[int]] | None:
    try:
        return [[(st := path.stat()).st_size, st.st_mtime_ns] for path in (layer.archive, layer.metadata_archive)]
    except FileNotFoundError:
        return None


def _make(wheel: TreeWheel, python: str, out: Path, bytecode: ByteCode) -> TreeLayer:
    from installer import install
    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    site = site_packages(python)
    scheme = {"purelib": site, "platlib": site, "headers": f"{VENV}/include/site/python{python}",
              "scripts": f"{VENV}/bin", "data": VENV}
    destination = _memory_destination()(scheme, interpreter=f"{VENV}/bin/python", script_kind="posix")
    try:
        with WheelFile.open(wheel.path) as source:
            dist_info = source.dist_info_dir
            source.validate_record()  # what RECORD says of every file is what the layer will hold
            install(source, destination, {"INSTALLER": INSTALLER, "REQUESTED": b""})
    except (InstallerError, ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:  # a wheel installer refuses
        issues = [issue.replace(f"In {wheel.path}, ", "") for issue in getattr(exc, "issues", None) or [str(exc)]]
        more = f" (and {len(issues) - 3} more)" if len(issues) > 3 else ""
        raise ImageBuildError(f"wheel {wheel.component}: {wheel.path.name} cannot be installed into the image: "
                              f"{'; '.join(issues[:3])}{more}",
                              hint="the patched tree builds a wheel that is not valid: check its build log") from None
    files = {path.lstrip("/"): content for path, content in destination.files.items()}
    # A tree's configuration files (pbr's data_files etc/<service>/: api-paste.ini, rootwrap.conf) go to /etc too,
    # where its processes look for them, as a distribution's package puts them: a deployment adds its own
    # <service>.conf beside them (or replaces the directory).
    etc = f"{VENV.lstrip('/')}/etc/"
    files.update({path[len(etc) - 4:]: content for path, content in list(files.items()) if path.startswith(etc)})
    prefix = site.lstrip("/") + "/"
    meta = {path: files[path] for path in (f"{prefix}{dist_info}/{name}" for name in ("METADATA", "WHEEL"))
            if path in files}
    if len(meta) != 2:
        raise ImageBuildError(f"wheel {wheel.component}: {wheel.path.name} has no {dist_info}/METADATA or WHEEL",
                              hint="the patched tree builds a wheel that is not valid: check its build log")
    # What uv's --compile-bytecode compiles: the modules under site-packages (not scripts or data files).
    compiled = bytecode.compiled({f"/{path}": data for path, (data, _) in files.items()
                                  if path.startswith(prefix) and path.endswith(".py")})
    files.update({path.lstrip("/"): (data, False) for path, data in compiled.items()})
    archives = {"layer.tar": _archive(files), "metadata.tar": _archive(meta)}
    out.mkdir(parents=True)
    for name, data in archives.items():
        (out / name).write_bytes(data)
    made = TreeLayer(wheel, out, sha256_bytes(archives["layer.tar"]), sha256_bytes(archives["metadata.tar"]),
                     dist_info, len(compiled))
    (out / "layer.json").write_text(json.dumps({
        "wheel": wheel.path.name, "wheel_sha256": wheel.sha256, **made.to_dict(), "stat": _stat(made),
    }, indent=2, sort_keys=True) + "\n")
    return made


def _memory_destination():
    """installer's destination for a scheme of paths, keeping each file in memory (``files``: path ->
    (bytes, executable)) instead of writing it: the archive is made from there, with no files on disk to
    write, walk and read back (keystone: 0.4 s instead of 0.8 s)."""
    from installer.destinations import SchemeDictionaryDestination
    from installer.records import Hash, RecordEntry
    from installer.scripts import Script
    from installer.utils import Scheme, copyfileobj_with_hashing

    @dataclass
    class MemoryDestination(SchemeDictionaryDestination):
        files: dict[str, tuple[bytes, bool]] = field(default_factory=dict)

        def write_to_fs(self, scheme, path, stream, is_executable):
            target = str(self._path_with_destdir(scheme, path))  # refuses a path outside the scheme's directory
            if target in self.files:
                raise FileExistsError(f"File already exists: {target}")
            buffer = io.BytesIO()
            digest, size = copyfileobj_with_hashing(stream, buffer, self.hash_algorithm)
            self.files[target] = (buffer.getvalue(), bool(is_executable))
            return RecordEntry(path, Hash(self.hash_algorithm, digest), size)

        def write_script(self, name, module, attr, section):  # the parent's reads the mode back from the disk
            script_name, data = Script(name, module, attr, section).generate(self.interpreter, self.script_kind)
            with io.BytesIO(data) as stream:
                return self.write_to_fs(Scheme("scripts"), script_name, stream, is_executable=True)

    return MemoryDestination


def _archive(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """``files`` (relative path -> (bytes, executable)) and every directory above them, in order, owned by
    root, with one mtime and normal modes."""
    entries: dict[str, tuple[bytes, bool] | None] = {}  # None: a directory
    for name, content in files.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            entries.setdefault("/".join(parts[:depth]), None)
        entries[name] = content
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name in sorted(entries):
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            content = entries[name]
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                data, executable = content
                info.size, info.mode = len(data), 0o755 if executable else 0o644
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
