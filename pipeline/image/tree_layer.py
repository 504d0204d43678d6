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

Each archive is written in the form the engine gives a layer (Docker's
``pkg/archive`` over Go's ``archive/tar``: entries in the order the engine
walks a directory, USTAR headers with the file type in the mode and root's
name, PAX only where USTAR cannot hold a name), so its sha256 is the diff ID
the engine records for the layer ``ADD`` makes of it: the image's own
record then shows that it holds these bytes (``service_image`` checks it).
The sha256 of both archives is recorded when they are written and checked,
in one read, when a build uses them; an archive whose bytes no longer match
is reported with its path and made again, never sent to the engine.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import console, locks
from pipeline.core.errors import ImageBuildError
from pipeline.core.files import (
    clean_staging,
    hash_inputs,
    read_json,
    replace_dir,
    sha256_bytes,
)
from pipeline.core.releases import Project
from pipeline.image.bytecode import ByteCode
from pipeline.image.tree_wheel import REPRODUCIBLE_EPOCH, TreeWheel, verified

LAYER_FORMAT = 6  # bump when the archives' content or form changes: every cached layer is then made again
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
    remake: Callable[[], TreeLayer] | None = field(default=None, compare=False, repr=False)  # after damage

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


def tree_layer(project: Project, wheel: TreeWheel, python: str, release: str, bytecode: ByteCode,
               verify: bool = False) -> TreeLayer:
    """The layer archives of ``wheel`` installed into the venv of an image with Python ``python``, whose
    interpreter ``bytecode`` compiles; with ``verify``, a cached entry is used only if its bytes match the
    sha256 recorded when it was written."""
    layout = project.layout
    # installer's version from its metadata: importing it costs a no-change build 0.08 s
    key = hash_inputs([LAYER_FORMAT, wheel.sha256, python, VENV, EPOCH, importlib.metadata.version("installer"),
                       bytecode.image_id])[:32]
    root = layout.tree_layers()
    directory = root / key

    def remake() -> TreeLayer:  # for a build that finds the archives damaged
        return tree_layer(project, wheel, python, release, bytecode, verify=True)

    with locks.hold(layout.cache_lock(f"tree-layer-{key}"), f"the image layer of {wheel.component}"):
        found = _cached(wheel, directory)
        if found is not None and not (verify and _mismatches(found, _read(found))):
            return dataclasses.replace(found, remake=remake)
        clean_staging(root, key)
        made: list[TreeLayer] = []
        with console.step(f"layer {wheel.component} ({release})"):
            replace_dir(directory, lambda staging: made.append(_make(verified(wheel), python, staging, bytecode)))
        return dataclasses.replace(made[0], directory=directory, remake=remake)


def read_verified(layer: TreeLayer) -> dict[str, bytes]:
    """The bytes of the layer's archives (by file name), each as its sha256 was recorded when it was written.

    What a build sends to the engine: read once, checked, sent.  An archive
    that no longer matches (a damaged disk, a hand edit) is reported with
    its path and made again; the archives are reproducible, so the new ones
    have the recorded hashes, or the build stops before shipping anything.
    """
    data = _read(layer)
    bad = _mismatches(layer, data)
    if not bad:
        return data
    console.note(f"the cached layer archive {bad[0]} of {layer.component} does not match the sha256 recorded when it "
                 "was written; making it again")
    if layer.remake is None:
        raise ImageBuildError(f"the layer archive {bad[0]} of {layer.component} is damaged",
                              hint=f"remove {layer.directory} and rerun")
    again = layer.remake()
    data = _read(again)
    if (again.sha256, again.metadata_sha256) != (layer.sha256, layer.metadata_sha256) or _mismatches(again, data):
        raise ImageBuildError(f"the layer archive of {layer.component} was damaged and made again, but the new one is "
                              f"not the one this build was planned with ({again.archive})",
                              hint="rerun the build: it plans with the new archive")
    return data


def _read(layer: TreeLayer) -> dict[str, bytes]:
    """Both archives' bytes by file name (none for one that is gone)."""
    data = {}
    for path in (layer.archive, layer.metadata_archive):
        try:
            data[path.name] = path.read_bytes()
        except FileNotFoundError:
            data[path.name] = b""
    return data


def _mismatches(layer: TreeLayer, data: dict[str, bytes]) -> list[Path]:
    expected = {layer.archive: layer.sha256, layer.metadata_archive: layer.metadata_sha256}
    return [path for path, digest in expected.items() if sha256_bytes(data[path.name]) != digest]


def _cached(wheel: TreeWheel, directory: Path) -> TreeLayer | None:
    """The cache entry as recorded, if its record and archives are there.  Their bytes are checked against the
    recorded hashes when a build reads them (``read_verified``), not here: hashing every archive of a release
    cost a no-change `build --all` 0.15 s, for images that need no build."""
    data = read_json(directory / "layer.json")
    if not isinstance(data, dict) or not {"sha256", "metadata_sha256", "dist_info", "bytecode"} <= data.keys():
        return None
    layer = TreeLayer(wheel, directory, data["sha256"], data["metadata_sha256"], data["dist_info"], data["bytecode"])
    if not (layer.archive.is_file() and layer.metadata_archive.is_file()):
        return None
    return layer


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
        "wheel": wheel.path.name, "wheel_sha256": wheel.sha256, **made.to_dict(),
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
    """``files`` (relative path -> (bytes, executable)) and every directory above them, owned by root, with one
    mtime and normal modes, as the engine writes a layer of these files (see the module's docstring)."""
    entries: dict[str, tuple[bytes, bool] | None] = {}  # None: a directory
    for name, content in files.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            entries.setdefault("/".join(parts[:depth]), None)
        entries[name] = content
    out = io.BytesIO()
    for name in sorted(entries, key=lambda n: n.split("/")):  # a directory, then what it holds, by name
        entry = entries[name]
        if entry is None:
            out.write(_header(f"{name}/", 0o40755, 0, b"5"))
        else:
            data, executable = entry
            out.write(_header(name, 0o100755 if executable else 0o100644, len(data), b"0"))
            out.write(data + bytes(-len(data) % BLOCK))
    out.write(bytes(2 * BLOCK))
    return out.getvalue()


BLOCK = 512


def _header(name: str, mode: int, size: int, typeflag: bytes) -> bytes:
    """The header block(s) of one entry as Go's archive/tar writes them for the engine (USTAR, with the
    name split into prefix and name where it is longer than 100 bytes; else a PAX record of the name)."""
    raw = name.encode()
    split = _ustar_split(raw) if raw.isascii() else None
    if len(raw) <= 100 and raw.isascii():
        return _block(raw, mode, size, EPOCH, typeflag)
    if split is not None:
        return _block(split[1], mode, size, EPOCH, typeflag, prefix=split[0])
    record = _pax_record("path", raw)
    head, _, tail = name.rpartition("/")
    pax_name = "/".join(part for part in (head, "PaxHeaders.0", tail) if part).encode("ascii", "ignore")[:100]
    short = bytearray(name.encode("ascii", "ignore")[:101])
    if len(short) > 100 and short[99] == ord("/"):  # Go keeps a cut name from ending in a slash
        short[len(bytes(short[:99]).rstrip(b"/"))] = 0
    return (_block(pax_name.rstrip(b"/"), 0, len(record), 0, b"x", owner=b"", devices=False)
            + record + bytes(-len(record) % BLOCK) + _block(bytes(short[:100]), mode, size, EPOCH, typeflag))


def _ustar_split(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's split of a long name into USTAR's prefix (up to 155 bytes) and name (up to 100): at the last
    slash that fits."""
    if len(name) <= 100:
        return None
    end = 156 if len(name) > 156 else len(name) - (name.endswith(b"/"))
    cut = name.rfind(b"/", 0, end)
    if cut <= 0 or len(name) - cut - 1 > 100 or len(name) - cut - 1 == 0 or cut > 155:
        return None
    return name[:cut], name[cut + 1:]


def _pax_record(key: str, value: bytes) -> bytes:
    body = f" {key}=".encode() + value + b"\n"
    size = len(body) + len(str(len(body)))
    if len(str(size)) + len(body) != size:
        size = len(str(size)) + len(body)
    return str(size).encode() + body


def _block(name: bytes, mode: int, size: int, mtime: int, typeflag: bytes, prefix: bytes = b"",
           owner: bytes = b"root", devices: bool = True) -> bytes:
    def octal(value: int, width: int) -> bytes:
        return b"%0*o\0" % (width - 1, value)

    block = bytearray(BLOCK)
    for offset, value in ((0, name[:100]), (100, octal(mode, 8)), (108, octal(0, 8)), (116, octal(0, 8)),
                          (124, octal(size, 12)), (136, octal(mtime, 12)), (148, b" " * 8), (156, typeflag),
                          (257, b"ustar\0" + b"00"), (265, owner), (297, owner), (345, prefix)):
        block[offset:offset + len(value)] = value
    if devices:
        block[329:345] = octal(0, 8) * 2
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)
