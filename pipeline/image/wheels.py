"""Dependency locks and the host-side wheelhouse: every Python file an image installs, fetched on the host.

Owns resolving a service's requirements under the release's effective
constraints for the image's Python and platform (``uv pip compile`` to a
PEP 751 ``pylock.toml``, which names every file with its URL and sha256),
choosing the file an image installs (the best wheel for its tags, else the
sdist and the build requirements that sdist needs), and the hash-addressed
file cache under ``cache_dir/wheels``.

Downloads happen here, on the host, with the configured index (credentials
included), CA bundle and proxies; build stages then install with
``--no-index`` from context images.  So no credential, CA bundle or index
URL ever reaches the engine, and a build needs no network for Python
packages at all.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)

from pipeline.core import console
from pipeline.core.errors import ConfigError, FetchError
from pipeline.core.files import hash_inputs, read_json, write_json
from pipeline.core.redact import redact
from pipeline.core.releases import Project
from pipeline.core.stamps import Stamp
from pipeline.sources.sdists import IndexFile, cached_download, index_files

UV_VERSION = "0.13.9"  # the uv binary build stages use (from the uv wheel on the index)
GLIBC_OF_SUITE = {"bullseye": 31, "bookworm": 36, "trixie": 41}
DEFAULT_BUILD_REQUIRES = ["setuptools>=40.8.0"]


@dataclass(frozen=True)
class Target:
    """What an image's Python installs: its version, the engine's architecture and the glibc of its Debian."""

    python: str  # "3.11"
    arch: str  # x86_64 | aarch64
    glibc: int  # 36 for bookworm

    @classmethod
    def of(cls, python: str, arch: str, suite: str) -> Target:
        return cls(python, {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch), GLIBC_OF_SUITE.get(suite, 36))

    @property
    def uv_platform(self) -> str:
        return f"{self.arch}-manylinux_2_{self.glibc}"

    def marker_environment(self) -> dict[str, str]:
        """The PEP 508 marker variables known for the image's Python (not its patch level: no python_full_version)."""
        return {"python_version": self.python, "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                "platform_machine": self.arch, "implementation_name": "cpython",
                "platform_python_implementation": "CPython"}

    def tags(self) -> list[Tag]:
        major, minor = (int(p) for p in self.python.split("."))
        platforms = []
        for glibc in range(self.glibc, 4, -1):
            platforms.append(f"manylinux_2_{glibc}_{self.arch}")
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}.get(glibc)
            if legacy:
                platforms.append(f"{legacy}_{self.arch}")
        return [*cpython_tags((major, minor), platforms=platforms),
                *compatible_tags((major, minor), f"cp{major}{minor}", platforms=platforms)]


@dataclass(frozen=True)
class LockedFile:
    name: str  # canonical distribution name
    version: str
    filename: str
    url: str  # may carry index credentials: never shown (redact), never recorded outside the cache
    sha256: str
    size: int = 0  # bytes, as the lock says

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


_uv_lock = threading.Lock()
UV_OFFLINE_MISSES = ("network was disabled", "not found in the cache")  # uv --offline: the cache lacks a page


@functools.cache
def uv_bin() -> str:
    """The uv executable of this installation (uv's own finder is not thread-safe: sysconfig races)."""
    with _uv_lock:
        try:
            from uv import find_uv_bin

            return find_uv_bin()
        except Exception:  # noqa: BLE001 - the PyPI package's finder; fall back to PATH
            found = shutil.which("uv")
            if not found:
                raise ConfigError("uv is not installed", hint="run scripts/setup (uv is a dependency of this project)") from None
            return found


def _run_uv(args: list[str], project: Project, offline: bool = False) -> subprocess.CompletedProcess:
    """uv on the host, with the network settings in its environment (credentials never on a command line)."""
    env = {**os.environ, **project.network.tool_env(), "UV_NO_PROGRESS": "1"}
    if project.layout.build_constraints_file().is_file():  # sdists' metadata is built under its pins too
        env.setdefault("UV_BUILD_CONSTRAINT", str(project.layout.build_constraints_file()))
    # A lock for the image's Python makes uv fetch that interpreter from GitHub to build sdists' metadata.  Where
    # GitHub is out of reach each attempt costs 5 s of retries, in every lock, before uv falls back to the host's
    # Python anyway; an installed one (`uv python install`) is still used, and an operator's own setting stands.
    env.setdefault("UV_PYTHON_DOWNLOADS", "never")
    cmd = [uv_bin(), *args]
    if offline or project.settings.offline:
        cmd.append("--offline")
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def _compile(project: Project, requirements: list[Path], constraints: str | None, target: Target,
             offline: bool) -> tuple[subprocess.CompletedProcess, list[dict]]:
    with tempfile.TemporaryDirectory(prefix="lock-") as scratch:
        args = ["pip", "compile", "--quiet", "--no-header", "--format", "pylock.toml", "--output-file",
                str(Path(scratch) / "pylock.toml"), "--python-version", target.python,
                "--python-platform", target.uv_platform]
        if constraints is not None:
            (Path(scratch) / "constraints.txt").write_text(constraints)
            args += ["-c", str(Path(scratch) / "constraints.txt")]
        args += [str(r) for r in requirements]
        result = _run_uv(args, project, offline)
        if result.returncode != 0:
            return result, []
        return result, tomllib.loads((Path(scratch) / "pylock.toml").read_text()).get("packages", [])


def fill_index_cache(project: Project, requirements: list[Path], constraints: str, target: Target) -> bool:
    """Fetch into uv's cache, in one resolution, the index pages that resolving any part of ``requirements`` reads.

    An index that sends no cache headers (this site's proxy to PyPI, many
    private mirrors) makes uv fetch every page again in every resolution;
    after this, ``compile_lock(..., from_cache=True)`` reads them from the
    cache.  Whether it worked (a set that does not resolve as a whole fills
    nothing useful, and the locks are then resolved online one by one).
    """
    return bool(requirements) and _compile(project, requirements, constraints, target, offline=False)[0].returncode == 0


def compile_lock(project: Project, requirements: list[Path], constraints: str | None, target: Target,
                 what: str, hint: str, from_cache: bool = False) -> list[dict]:
    """``uv pip compile`` to pylock.toml: the resolved packages, each with its files.

    ``from_cache``: the index pages were fetched moments ago (``fill_index_cache``), so the resolution reads
    them from uv's cache, and goes online only if it needs one that is not there.
    """
    if not requirements:
        return []
    if from_cache and not project.settings.offline:
        result, packages = _compile(project, requirements, constraints, target, offline=True)
        if result.returncode == 0:
            return packages
    result, packages = _compile(project, requirements, constraints, target, offline=False)
    if result.returncode != 0:
        detail = "\n    ".join(redact(result.stderr).strip().splitlines()[-10:])
        if project.settings.offline and any(m in result.stderr for m in UV_OFFLINE_MISSES):
            raise FetchError(f"{what}: resolving the dependencies needs the package index "
                             f"({project.network.index_public}), and offline mode forbids reading it: uv's cache "
                             f"lacks what they ask for:\n    {detail}",
                             hint="run once without --offline (a changed override or requirement needs a new "
                                  "resolution); offline runs then reuse its result")
        raise ConfigError(f"{what}: dependencies cannot be resolved:\n    {detail}", hint=hint)
    return packages


def choose_file(package: dict, target: Target, ranking: dict[Tag, int]) -> LockedFile:
    """The file an image installs for ``package``: its best wheel for the target, else its sdist."""
    name, version = canonicalize_name(package["name"]), package["version"]
    best: tuple[int, dict] | None = None
    for wheel in package.get("wheels", []):
        filename = wheel["url"].rsplit("/", 1)[-1]
        try:
            _, _, _, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename:
            continue
        rank = min((ranking[t] for t in tags if t in ranking), default=None)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, wheel)
    if best is not None:
        wheel = best[1]
        return LockedFile(name, version, wheel["url"].rsplit("/", 1)[-1], wheel["url"], wheel["hashes"]["sha256"],
                          int(wheel.get("size", 0)))
    sdist = package.get("sdist")
    if not sdist:
        raise ConfigError(f"{name} {version}: the index has no wheel for {target.uv_platform} (Python {target.python}) "
                          "and no sdist", hint="pin another version in overrides/<release>/constraints.txt")
    return LockedFile(name, version, sdist["url"].rsplit("/", 1)[-1], sdist["url"], sdist["hashes"]["sha256"],
                      int(sdist.get("size", 0)))


def locked_files(packages: list[dict], target: Target) -> list[LockedFile]:
    ranking = {tag: index for index, tag in enumerate(target.tags())}
    return [choose_file(p, target, ranking) for p in packages]


def fetch_files(project: Project, files: list[LockedFile]) -> dict[str, Path]:
    """Every file in the hash-addressed cache (downloaded in parallel when missing); sha256 -> path."""
    cache = project.layout.wheel_cache()

    def one(item: LockedFile) -> tuple[str, Path]:
        entry = IndexFile(item.filename, item.url, item.sha256)
        return item.sha256, cached_download(project, entry, cache / item.sha256[:2] / item.sha256, f"{item.filename}")

    unique = list({f.sha256: f for f in files}.values())
    missing = {f.sha256 for f in unique if not (cache / f.sha256[:2] / f.sha256 / f.filename).exists()}
    progress = console.Progress(f"downloading {len(missing)} of {len(unique)} package files") if len(missing) > 1 else None
    done: list[Path] = []

    def counted(item: LockedFile) -> tuple[str, Path]:
        result = one(item)
        if progress is not None and item.sha256 in missing:
            done.append(result[1])
            size = sum(p.stat().st_size for p in done)
            progress.update(f"{len(done)} of {len(missing)} ({size / 1e6:.0f} MB)")
        return result

    # Downloads wait on the network inside whichever step needs them: eight at once, whatever --jobs is.
    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = dict(pool.map(counted, unique))
    if progress is not None:
        progress.done()
        console.note(f"downloaded {len(missing)} package files ({sum(p.stat().st_size for p in done) / 1e6:.0f} MB)")
    return paths


# --- build requirements --------------------------------------------------------------


SETUP_REQUIRES_RE = re.compile(r"setup_requires\s*=\s*\[([^\]]*)\]")


def _build_requires_of(pyproject: bytes | None, setup_py: bytes | None) -> list[str]:
    """PEP 517 build requirements, plus a legacy ``setup_requires`` (setuptools would fetch it from the index)."""
    requires = DEFAULT_BUILD_REQUIRES
    if pyproject is not None:
        try:
            system = tomllib.loads(pyproject.decode("utf-8")).get("build-system")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            system = None
        if isinstance(system, dict) and "requires" in system:
            requires = [str(r) for r in system["requires"]]
    if setup_py is not None:
        for group in SETUP_REQUIRES_RE.findall(setup_py.decode("utf-8", "replace")):
            requires = [*requires, *re.findall(r"[\"']([^\"']+)[\"']", group)]
    return list(dict.fromkeys(requires))


def tree_build_requires(tree: Path) -> list[str]:
    files = [tree / "pyproject.toml", tree / "setup.py"]
    return _build_requires_of(*(f.read_bytes() if f.exists() else None for f in files))


def sdist_build_requires(archive: Path) -> list[str]:
    found: dict[str, bytes | None] = {"pyproject.toml": None, "setup.py": None}
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] in found and member.isfile():
                    handle = tar.extractfile(member)
                    found[parts[1]] = handle.read() if handle else None
    except (tarfile.TarError, OSError, EOFError):
        pass
    return _build_requires_of(found["pyproject.toml"], found["setup.py"])


def build_requirement_files(project: Project, requirement_sets: list[list[str]], target: Target) -> list[LockedFile]:
    """Files that building from source needs offline: each distinct set of build requirements, resolved alone."""
    found: dict[str, LockedFile] = {}
    pins = project.layout.build_constraints_file()
    pins_text = pins.read_text() if pins.is_file() else None
    for reqs in {tuple(sorted(r)) for r in requirement_sets}:
        stamp = Stamp(project.layout.cache_dir / "stamps" / "build-requires" /
                      f"{hash_inputs([reqs, asdict(target), pins_text])[:24]}.json")
        cached = stamp.current([reqs, asdict(target), project.network.index_public, pins_text])
        if cached:
            files = [LockedFile(**f) for f in cached["files"]]
        else:
            with tempfile.TemporaryDirectory(prefix="build-reqs-") as scratch:
                req_file = Path(scratch) / "build-requirements.txt"
                req_file.write_text("\n".join(reqs) + "\n")
                packages = compile_lock(project, [req_file], pins_text, target, f"build requirements {', '.join(reqs)}",
                                        hint="a build backend cannot be resolved from the index (or under "
                                             "overrides/build-constraints.txt)")
            files = locked_files(packages, target)
            stamp.record([reqs, asdict(target), project.network.index_public, pins_text],
                         {"files": [asdict(f) for f in files]})
        for item in files:
            found[item.sha256] = item
    return sorted(found.values(), key=lambda f: f.filename)


def _sdist_requires(project: Project, item: LockedFile) -> list[str]:
    """Build requirements of an sdist (read once from the archive, then remembered by its hash)."""
    stamp = Stamp(project.layout.cache_dir / "stamps" / "sdist-build-requires" / f"{item.sha256}.json")
    cached = stamp.current(item.sha256)
    if cached:
        return list(cached["requires"])
    path = fetch_files(project, [item])[item.sha256]
    requires = sdist_build_requires(path)
    stamp.record(item.sha256, {"requires": requires})
    return requires


@dataclass(frozen=True)
class WheelSet:
    """Files a build stage installs from (``--find-links``): packages plus what building the sdists among them needs."""

    files: tuple[LockedFile, ...]

    @property
    def digest(self) -> str:
        return hash_inputs(sorted(f.sha256 for f in self.files))


def wheel_set(project: Project, files: list[LockedFile] | tuple[LockedFile, ...], target: Target,
              trees: list[Path] | tuple[Path, ...] = ()) -> WheelSet:
    requirement_sets = [tree_build_requires(t) for t in trees]
    requirement_sets += [_sdist_requires(project, f) for f in files if not f.is_wheel]
    extra = build_requirement_files(project, requirement_sets, target) if requirement_sets else []
    unique = {f.sha256: f for f in [*files, *extra]}
    return WheelSet(tuple(sorted(unique.values(), key=lambda f: f.filename)))


# --- uv for build stages --------------------------------------------------------------------


def uv_wheel(project: Project, target: Target) -> IndexFile:
    """The uv wheel for the engine's architecture, as the index lists it (looked up once, then remembered)."""
    record = project.layout.wheel_cache() / f"uv-{UV_VERSION}-{target.arch}.json"
    data = read_json(record)
    if isinstance(data, dict) and {"filename", "url", "sha256"} <= set(data):
        return IndexFile(**data)
    if project.settings.offline:
        raise FetchError(f"uv {UV_VERSION} for {target.arch} is not in the cache, and offline mode forbids downloading it",
                         hint="run once without --offline")
    wanted = {Tag("py3", "none", p) for p in (f"manylinux_2_17_{target.arch}", f"manylinux2014_{target.arch}",
                                               f"musllinux_1_1_{target.arch}")}
    for candidate in index_files(project, "uv"):
        if not candidate.filename.startswith(f"uv-{UV_VERSION}-") or not candidate.filename.endswith(".whl"):
            continue
        try:
            _, version, _, tags = parse_wheel_filename(candidate.filename)
        except InvalidWheelFilename:
            continue
        if str(version) == UV_VERSION and tags & wanted:
            write_json(record, asdict(candidate))
            return candidate
    raise FetchError(f"no uv {UV_VERSION} wheel for {target.arch} on {project.network.index_public}",
                     hint="the build base needs uv from the package index")


def uv_binary(project: Project, wheel: IndexFile) -> bytes:
    """The ``uv`` executable inside the (cached, hash-checked) uv wheel."""
    path = cached_download(project, wheel, project.layout.wheel_cache() / wheel.sha256[:2] / wheel.sha256, wheel.filename)
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(".data/scripts/uv")))


def wheelhouse_context(files: dict[str, Path]) -> io.BytesIO:
    """Package files as the tar stream of a context image (streamed from the cache, metadata normalised)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(files.values(), key=lambda p: p.name):
            info = tar.gettarinfo(str(path), path.name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime, info.mode = 0, 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    buffer.seek(0)
    return buffer
