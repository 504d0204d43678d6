"""Byte code of the patched trees' modules, made by the image's own Python and kept per module.

Owns ``<cache>/bytecode/<interpreter>/``: for each module source (its path
in the image and its bytes) the ``.pyc`` that the image's interpreter makes
of it as uv's ``--compile-bytecode`` does (timestamp-checked, against the
source's fixed archive mtime, with a fixed hash seed), or a marker that it
does not compile, which leaves it without one as uv does.  What the cache
lacks is compiled in one throw-away container of the runtime base, whose
``pythonX.Y`` is the image's interpreter (the venv links to it): a code
change compiles the modules it changed and nothing else, and no image build
step compiles.

The interpreter is named by the runtime base's image ID, so a base made
again compiles everything again.  Entries are content-addressed and written
atomically: two runs at once may both compile a module, and either's entry
is right; a killed run leaves entries that are whole or absent.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from .engine import run_with_files
from .errors import ImageBuildError
from .files import sha256_bytes, write_atomic

# Runs in the container: the sources come as /tmp/sources.tar (each at its path in the image, relative to /),
# are unpacked into memory, given the archive's mtime and compiled as uv compiles them, by forked workers
# sharing the fixed hash seed; each .pyc goes into /tmp/bytecode.tar under its source's name.
COMPILE_PROGRAM = """\
import importlib.util, multiprocessing, os, py_compile, sys, tarfile
from concurrent.futures import ProcessPoolExecutor
epoch, scratch = int(sys.argv[1]), "/dev/shm/sources"
with tarfile.open("/tmp/sources.tar") as archive:
    names = [member.name for member in archive if member.isfile()]
    archive.extractall(scratch)
def compile_one(name):
    source, path = os.path.join(scratch, name), "/" + name
    os.utime(source, (epoch, epoch))
    compiled = scratch + ".out" + importlib.util.cache_from_source(path)
    return name, py_compile.compile(source, cfile=compiled, dfile=path, doraise=False, quiet=2,
                                    invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
with ProcessPoolExecutor(mp_context=multiprocessing.get_context("fork")) as pool:
    results = list(pool.map(compile_one, names, chunksize=16))
with tarfile.open("/tmp/bytecode.tar", "w") as out:
    for name, compiled in results:
        if compiled:
            out.add(compiled, arcname=name)
print(sys.implementation.cache_tag)
"""


def package_modules(tree: Path, site: str) -> dict[str, bytes]:
    """The modules of a tree's top-level packages (directories with an ``__init__.py``) at the paths a wheel
    of a flat-layout tree installs them: a guess, good enough to compile them before the wheel exists (the
    cache is keyed by path and content, so a wrong guess costs work, never a wrong ``.pyc``)."""
    modules = {}
    for package in sorted(p for p in tree.iterdir() if p.is_dir() and p.name.isidentifier() and (p / "__init__.py").is_file()):
        for path in package.rglob("*.py"):
            modules[f"{site}/{path.relative_to(tree).as_posix()}"] = path.read_bytes()
    return modules


class ByteCode:
    """The byte code of module sources for one interpreter: the runtime base image ``image_id``."""

    def __init__(self, client, image_id: str, python: str, cache_root: Path, epoch: int) -> None:
        self.client, self.image_id, self.python, self.epoch = client, image_id, python, epoch
        self.directory = cache_root / image_id.removeprefix("sha256:")[:32]

    def compiled(self, sources: dict[str, bytes]) -> dict[str, bytes]:
        """The ``.pyc`` files of ``sources`` (path in the image -> content), by their paths in the image;
        a source that does not compile has none."""
        keys = {path: sha256_bytes(path.encode() + b"\0" + data) for path, data in sources.items()}
        missing = {path: sources[path] for path, key in keys.items()
                   if not self._entry(key, ".pyc").exists() and not self._entry(key, ".none").exists()}
        tag_file = self.directory / "cache-tag"
        if missing or not tag_file.exists():
            self._compile(missing, keys, tag_file)
        tag = tag_file.read_text().strip()
        out = {}
        for path, key in keys.items():
            entry = self._entry(key, ".pyc")
            if entry.exists():
                folder, _, name = path.rpartition("/")
                out[f"{folder}/__pycache__/{name.removesuffix('.py')}.{tag}.pyc"] = entry.read_bytes()
        return out

    def _entry(self, key: str, suffix: str) -> Path:
        return self.directory / key[:2] / f"{key}{suffix}"

    def _compile(self, sources: dict[str, bytes], keys: dict[str, str], tag_file: Path) -> None:
        # One file to put: the engine would take about 1 ms for each of the sources' files.
        archive = _tar({"sources.tar": _tar({path.lstrip("/"): data for path, data in sources.items()})})
        size = sum(len(data) for data in sources.values())
        out, result = run_with_files(
            self.client, self.image_id,
            [f"python{self.python}", "-S", "-c", COMPILE_PROGRAM, str(self.epoch)],
            "byte code", put=("/tmp", archive), get="/tmp/bytecode.tar", environment={"PYTHONHASHSEED": "0"},
            shm_size=max(64 << 20, 3 * size))  # the sources and their .pyc, in memory
        compiled = _members(_members(result or b"")["bytecode.tar"])
        tag = out.decode().strip().splitlines()[-1] if out.strip() else ""
        if not tag.startswith("cpython-"):
            raise ImageBuildError(f"byte code: the runtime base {self.image_id[:19]} reports no CPython cache tag ({tag!r})",
                                  hint="the runtime base must run CPython: check dockerfiles/base-runtime.Dockerfile")
        for path in sources:
            data = compiled.get(path.lstrip("/"))
            write_atomic(self._entry(keys[path], ".pyc" if data is not None else ".none"), data or b"")
        write_atomic(tag_file, tag + "\n")


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar if member.isfile()}  # type: ignore[union-attr]
