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
is right; a killed run leaves entries that are whole or absent.  Each entry
starts with the sha256 of its ``.pyc``, recorded when it was written and
checked when a layer reads it: a damaged entry (overwritten, cut off) is
reported and compiled again, never put into a layer.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path
from typing import Literal

from pipeline.core import console
from pipeline.core.errors import ImageBuildError
from pipeline.core.files import sha256_bytes, write_atomic
from pipeline.image.engine import run_with_files

FORMAT = 2  # bump when an entry's form changes: the entries of an older form are then left unread
DIGEST = 32  # an entry: the sha256 of the .pyc, then the .pyc
CACHE_TAG = re.compile(r"cpython-\d+")

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
        self.directory = cache_root / f"{image_id.removeprefix('sha256:')[:32]}-v{FORMAT}"

    def compiled(self, sources: dict[str, bytes]) -> dict[str, bytes]:
        """The ``.pyc`` files of ``sources`` (path in the image -> content), by their paths in the image;
        a source that does not compile has none."""
        keys = {path: sha256_bytes(path.encode() + b"\0" + data) for path, data in sources.items()}
        found = {path: self._read(key) for path, key in keys.items()}
        damaged = [self._entry(keys[path], ".pyc") for path, entry in found.items() if entry is False]
        if damaged:
            console.note(f"{len(damaged)} cached byte-code file(s) do not match the sha256 recorded when they were "
                         f"written (e.g. {damaged[0]}); compiling them again")
        missing = {path: sources[path] for path, entry in found.items() if not isinstance(entry, bytes)}
        tag = self._tag()
        if missing or tag is None:
            found.update(self._compile(missing, keys))
            tag = self._tag()
        out = {}
        for path, pyc in found.items():
            if pyc:
                folder, _, name = path.rpartition("/")
                out[f"{folder}/__pycache__/{name.removesuffix('.py')}.{tag}.pyc"] = pyc
        return out

    def _entry(self, key: str, suffix: str) -> Path:
        return self.directory / key[:2] / f"{key}{suffix}"

    def _read(self, key: str) -> bytes | Literal[False] | None:
        """The entry's ``.pyc`` if whole; b"" for a module that does not compile; None if absent; False if
        damaged (its bytes are not those whose hash it recorded)."""
        try:
            data = self._entry(key, ".pyc").read_bytes()
        except FileNotFoundError:
            none = self._entry(key, ".none")
            return b"" if none.exists() and none.stat().st_size == 0 else None
        pyc = data[DIGEST:]
        return pyc if len(data) > DIGEST and hashlib.sha256(pyc).digest() == data[:DIGEST] else False

    def _tag(self) -> str | None:
        try:
            tag = (self.directory / "cache-tag").read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return tag if CACHE_TAG.fullmatch(tag) else None

    def _compile(self, sources: dict[str, bytes], keys: dict[str, str]) -> dict[str, bytes]:
        """Compile ``sources`` in a container of the runtime base, keep each result (and the interpreter's
        cache tag); their .pyc by path (b"" for one that does not compile)."""
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
        if not CACHE_TAG.fullmatch(tag):
            raise ImageBuildError(f"byte code: the runtime base {self.image_id[:19]} reports no CPython cache tag ({tag!r})",
                                  hint="the runtime base must run CPython: check dockerfiles/base-runtime.Dockerfile")
        made = {}
        for path in sources:
            made[path] = data = compiled.get(path.lstrip("/"), b"")
            write_atomic(self._entry(keys[path], ".pyc" if data else ".none"),
                         hashlib.sha256(data).digest() + data if data else b"")
        write_atomic(self.directory / "cache-tag", tag + "\n")
        return made


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
