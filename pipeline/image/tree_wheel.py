"""The wheel of a patched tree, built on the build host: what the tree's image layer installs.

Owns turning a patched tree (a service or a library at its prepared head)
into one pure-Python wheel, and the cache of those wheels.  The build is a
PEP 517 wheel build, as uv makes when it installs from a tree, in an
isolated environment of the tree's own build requirements from the
hash-checked package-file cache, with no index (made once per set of
requirement files under ``<cache>/build-envs/``), on a copy of the tree that
the backend may write in (pbr rewrites AUTHORS, ChangeLog and the egg-info
where it builds): ``<workdir>/<release>/wheels/<component>/``, made equal to
the tree by content before each build, so a changed patch rewrites only the
files it changed (and setuptools, whose build directory stays when it can
only hold what the next build makes, copies only those); with
``PBR_VERSION`` reaching only this build and ``SOURCE_DATE_EPOCH`` fixing the
archive's timestamps: the same tree gives the same bytes.

Building here rather than in the image build spares a code change the copy
of the whole tree into a layer and a build environment inside a container;
the image build copies in the wheel alone.  Wheels are content-addressed by
their inputs (tree head, version, build requirement files, the host's Python
version) under ``<cache>/tree-wheels/``, so a rerun, another release or
another work directory with the same tree reuses one; a per-key lock makes
two runs at once build it once, and a killed build leaves only a staging
directory that the next one removes.  A cached wheel is checked against the
sha256 recorded when it was built when a layer is made of it
(``verified``), not on every lookup: a damaged one is built again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from pyproject_hooks import (
    BackendUnavailable,
    BuildBackendHookCaller,
    BuildBackendWarning,
)

from pipeline.core import console, locks
from pipeline.core.errors import ImageBuildError
from pipeline.core.files import (
    TreeSync,
    clean_staging,
    hash_inputs,
    read_json,
    remove,
    replace_dir,
    sha256_file,
    sync_tree,
    write_json,
)
from pipeline.core.releases import Project
from pipeline.image.wheels import LockedFile, fetch_files, tree_build_requires, uv_bin
from pipeline.patches.records import PreparedTree

# The hook caller re-raises the backend's warnings (setuptools' deprecations, by the hundred for
# pbr trees) in this process, on stderr, which carries progress only: the build's log has its output.
warnings.filterwarnings("ignore", category=BuildBackendWarning)

WHEEL_FORMAT = 1  # bump when the way a wheel is built changes: every cached wheel is then rebuilt
DEFAULT_BACKEND = "setuptools.build_meta:__legacy__"  # PEP 517's fallback for a tree without [build-system]
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01, the oldest time a zip archive can hold
SETUPTOOLS_BUILD = "build"  # setuptools' build directory in the build tree, kept between builds
BUILD_COMPLETE = ".openstack-patches-complete"  # in setuptools' build/ or a build environment: it was finished
BUILD_ENV_FORMAT = 1  # bump when the way a build environment is made changes
BUILD_CONFIGURATION = frozenset({"setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in"})


@dataclass(frozen=True)
class TreeWheel:
    component: str
    path: Path  # the wheel, alone in its directory of the cache (that directory is the build context)
    sha256: str
    remake: Callable[[], TreeWheel] | None = field(default=None, compare=False, repr=False)  # after damage

    @property
    def directory(self) -> Path:
        return self.path.parent

    def to_dict(self) -> dict[str, str]:
        return {"file": self.path.name, "sha256": self.sha256}


def _backend(tree: Path, label: str) -> tuple[str, list[str] | None]:
    pyproject = tree / "pyproject.toml"
    try:
        system = tomllib.loads(pyproject.read_text()).get("build-system", {}) if pyproject.exists() else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ImageBuildError(f"{label}: {pyproject.name} of the patched tree is not valid TOML ({exc})",
                              hint="a patch of the series broke it: check the patches that change pyproject.toml") from None
    return str(system.get("build-backend") or DEFAULT_BACKEND), system.get("backend-path")


def _cached(directory: Path, record: Path, verify: bool) -> TreeWheel | None:
    """The cached wheel as recorded; with ``verify``, only if its bytes have the recorded sha256."""
    data = read_json(record)
    if not isinstance(data, dict) or not {"component", "file", "sha256"} <= data.keys():
        return None
    path = directory / data["file"]
    if not path.is_file() or (verify and sha256_file(path) != data["sha256"]):
        return None
    return TreeWheel(data["component"], path, data["sha256"])


def verified(wheel: TreeWheel) -> TreeWheel:
    """``wheel`` if its bytes have the sha256 recorded when it was built; else built again (the build is
    reproducible: the same bytes), reported with its path."""
    if sha256_file(wheel.path) == wheel.sha256:
        return wheel
    console.note(f"the cached wheel {wheel.path} of {wheel.component} does not match the sha256 recorded when it was "
                 "built; building it again")
    again = wheel.remake() if wheel.remake else None
    if again is None or again.sha256 != wheel.sha256:
        raise ImageBuildError(f"the wheel of {wheel.component} was damaged ({wheel.path}) and could not be built "
                              "again with the same bytes", hint="rerun the build")
    return again


def tree_wheel(project: Project, tree: PreparedTree, build_files: list[LockedFile] | tuple[LockedFile, ...],
               beside: Callable[[], None] | None = None, verify: bool = False) -> TreeWheel:
    """The wheel of ``tree`` at its head, from the cache or built now (with ``beside`` run in a thread
    meanwhile: work that only a new wheel needs); with ``verify``, a cached one only if its bytes are whole."""
    layout = project.layout
    source = layout.resolve(tree.tree)
    label = f"wheel {tree.component} ({tree.release})"
    backend, backend_path = _backend(source, label)
    key = hash_inputs([WHEEL_FORMAT, tree.component, tree.head, tree.source.version, backend, backend_path,
                       sorted(f.sha256 for f in build_files), list(sys.version_info[:2])])[:32]
    root = layout.tree_wheels()
    directory, record = root / key, root / f"{key}.json"

    def remake() -> TreeWheel:  # for a layer that finds the wheel damaged
        return tree_wheel(project, tree, build_files, verify=True)

    with locks.hold(layout.cache_lock(f"tree-wheel-{key}"), f"the wheel of {tree.component} ({tree.release})"):
        found = _cached(directory, record, verify)
        if found is not None:
            return dataclasses.replace(found, remake=remake)
        clean_staging(root, key)
        log = layout.tree_wheel_log(tree.release, tree.component)
        log.parent.mkdir(parents=True, exist_ok=True)
        with console.step(label), log.open("w") as log_file, _running(beside):
            links = fetch_files(project, list(build_files))
            built: dict[str, Path] = {}

            build_tree = layout.wheel_build_tree(tree.release, tree.component)
            with locks.hold(layout.lock(f"{tree.release}-wheel-{tree.component}"), f"the build tree of {label}"):
                incremental = _keep_or_clear_build_dir(
                    source, build_tree, sync_tree(source, build_tree, keep=(SETUPTOOLS_BUILD,)))

                def fill(staging: Path) -> None:
                    built["wheel"] = _build(project, build_tree, staging, tree.source.version,
                                            backend, backend_path, build_files, links, log_file, label, log)

                replace_dir(directory, fill)
                if incremental and (build_tree / SETUPTOOLS_BUILD).is_dir():
                    (build_tree / SETUPTOOLS_BUILD / BUILD_COMPLETE).touch()
        path = directory / built["wheel"].name
        wheel = TreeWheel(tree.component, path, sha256_file(path), remake)
        write_json(record, {"component": tree.component, **wheel.to_dict()})
        return wheel


@contextlib.contextmanager
def _running(work: Callable[[], None] | None) -> Iterator[None]:
    thread = threading.Thread(target=work, daemon=True) if work else None
    if thread:
        thread.start()
    try:
        yield
    finally:
        if thread:
            thread.join()


def _keep_or_clear_build_dir(source: Path, build_tree: Path, sync: TreeSync) -> bool:
    """Keep setuptools' build directory from the last build if it can only hold what this build makes.

    setuptools copies a source file into ``build/lib`` only when it is newer
    than its copy there, and the sync has just rewritten exactly the files
    that changed: a code change then copies those, not keystone's 1200 files.
    The directory goes (and the build copies everything) when the last build
    in it did not finish (no marker: a file may be half written), when the
    tree lost a file it may hold a copy of (the copy would ship), or when the
    build configuration changed (what is copied may differ).  Returns False,
    with nothing kept or marked, for a tree that has a ``build`` of its own.
    """
    if os.path.lexists(source / SETUPTOOLS_BUILD):
        return False
    build_dir = build_tree / SETUPTOOLS_BUILD
    marker = build_dir / BUILD_COMPLETE
    held: set[str] = set()
    if marker.exists():
        for directory, _, files in os.walk(build_dir):
            rel = os.path.relpath(directory, build_dir)
            held.update(os.path.normpath(os.path.join(rel, name)) for name in files)
    # A removed file's copy sits at the same path below build/lib, less the package directory's
    # prefix (``src/`` for a src layout): any tail of the path that build/ holds counts.
    lost = any(os.path.join("lib", *parts[i:]) in held
               for parts in (path.split(os.sep) for path in sync.removed) for i in range(len(parts)))
    if not marker.exists() or lost or any(path in BUILD_CONFIGURATION for path in sync.written):
        remove(build_dir)
    else:
        marker.unlink()  # until this build finishes
    return True


def _build(project: Project, src: Path, out: Path, version: str, backend: str, backend_path: list[str] | None,
           build_files: Sequence[LockedFile], links: dict[str, Path], log_file, label: str, log: Path) -> Path:
    def fail(what: str) -> ImageBuildError:
        return ImageBuildError(f"{label}: {what}", hint=f"the build's output is in {log}")

    started = time.monotonic()

    def run(cmd: list[str], cwd: Path | str | None = None, extra: dict[str, str] | None = None) -> None:
        log_file.write(f"[{time.monotonic() - started:6.2f}s] $ {' '.join(str(c) for c in cmd)}\n")
        log_file.flush()
        env = {**os.environ, **(extra or {})}
        for name in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"):
            env.pop(name, None)
        result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                check=False)
        if result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, cmd)

    try:
        requires = tree_build_requires(src)
        env_dir = build_env(project, requires, build_files, links, run)
        # The shared environment is never written after it is made: no byte code from the hooks' imports.
        hook_env = {"PBR_VERSION": version, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH, "PYTHONDONTWRITEBYTECODE": "1"}

        caller = BuildBackendHookCaller(str(src), backend, backend_path, python_executable=str(env_dir / "bin" / "python"),
                                        runner=lambda cmd, cwd=None, extra_environ=None:
                                        run(cmd, cwd, {**(extra_environ or {}), **hook_env}))
        # What the tree declares is installed by construction, extras and all.
        asked = backend_requires(project.layout.tree_wheels(), caller, src, env_dir, backend, backend_path)
        missing = [r for r in unmet(asked, env_dir) if r not in requires]
        if missing:
            raise ImageBuildError(f"{label}: its build backend asks for {', '.join(missing)}, which the tree's declared "
                                  f"build requirements do not provide",
                                  hint="declare them in the patched tree's pyproject.toml [build-system] requires "
                                       "(or setup.py setup_requires)")
        out.mkdir()
        # No separate metadata hook first: the backend writes the same metadata into the wheel
        # (same bytes, measured on keystone), and each hook is one more start of the backend.
        wheel = out / caller.build_wheel(str(out))
        log_file.write(f"[{time.monotonic() - started:6.2f}s] built {wheel.name}\n")
    except ImageBuildError:
        raise
    except subprocess.CalledProcessError:
        raise fail("building the wheel of the patched tree failed") from None
    except BackendUnavailable as exc:
        log_file.write(f"{exc.traceback}\n")
        raise fail(f"building the wheel of the patched tree failed: its build backend {backend!r} cannot be "
                   f"imported (pyproject.toml [build-system])") from None
    except Exception as exc:  # noqa: BLE001 - the hook caller's other errors (a hook the backend lacks, ...): the log has them
        log_file.write(f"{exc!r}\n")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise fail(f"building the wheel of the patched tree failed: {type(exc).__name__} {first}".rstrip()) from None
    _, _, _, tags = parse_wheel_filename(wheel.name)
    if any(tag.abi != "none" or tag.platform != "any" for tag in tags):
        raise fail(f"the tree builds a platform wheel ({wheel.name}); only pure-Python trees can be patched")
    return wheel


def backend_requires(cache: Path, caller: BuildBackendHookCaller, tree: Path, env_dir: Path, backend: str,
                     backend_path: list[str] | None) -> list[str]:
    """What the backend asks for to build a wheel of ``tree``, asked once per build configuration.

    The hook is one start of the backend (a quarter of a second for a pbr
    tree, which runs setup.py for it); its answer comes from the build
    configuration, which a code change leaves alone.  The cache key holds
    every file at the top of the tree (setup.py, setup.cfg, pyproject.toml,
    and whatever files a setup.py might read there), every file of an
    in-tree backend (``backend-path``), the backend and its environment, so
    a patch to any of them asks again.
    """
    files = [Path(entry.path) for entry in os.scandir(tree) if entry.is_file(follow_symlinks=False)]
    files += [path for entry in backend_path or [] for path in (tree / entry).rglob("*") if path.is_file()]
    inputs = sorted({(str(path.relative_to(tree)), sha256_file(path)) for path in files})
    key = hash_inputs([WHEEL_FORMAT, str(env_dir), backend, backend_path, inputs])[:32]
    record = cache / f"backend-requires-{key}.json"
    answer = read_json(record)
    if isinstance(answer, list) and all(isinstance(item, str) for item in answer):
        return answer
    answer = list(caller.get_requires_for_build_wheel())
    write_json(record, answer)
    return answer


def build_env(project: Project, requires: list[str], build_files: Sequence[LockedFile], links: dict[str, Path],
              run: Callable[[list], None]) -> Path:
    """The isolated environment of a tree's declared build requirements, made once per set of inputs.

    Keyed by the host's Python, the build requirement files and the
    requirements installed from them, under ``<cache>/build-envs/``, with
    its byte code compiled when it is made: a build after a code change
    neither makes an environment nor compiles setuptools again.  It is
    complete once its marker exists (a killed make leaves no marker, and
    the next one starts it again); nothing writes in it after that.
    """
    layout = project.layout
    key = hash_inputs([BUILD_ENV_FORMAT, sys.executable, list(sys.version_info[:3]),
                       sorted(f.sha256 for f in build_files), sorted(requires)])[:32]
    env_dir = layout.build_envs() / key
    if (env_dir / BUILD_COMPLETE).exists():
        return env_dir
    with locks.hold(layout.cache_lock(f"build-env-{key}"), "a build environment of the patched trees"):
        if (env_dir / BUILD_COMPLETE).exists():
            return env_dir
        remove(env_dir)
        env_dir.parent.mkdir(parents=True, exist_ok=True)
        run([uv_bin(), "venv", "--quiet", "--python", sys.executable, env_dir])
        if requires:
            link_dir = env_dir / "links"  # what uv's --find-links reads: the build requirement files
            link_dir.mkdir()
            for path in links.values():
                os.symlink(path, link_dir / path.name)
            run([uv_bin(), "pip", "install", "--quiet", "--no-index", "--compile-bytecode", "--find-links", link_dir,
                 "--python", env_dir / "bin" / "python", *requires])
            shutil.rmtree(link_dir)
        (env_dir / BUILD_COMPLETE).touch()
    return env_dir


def unmet(requirements: list[str], env_dir: Path) -> list[str]:
    """The requirements that the environment's installed distributions do not meet (an extra counts as unmet)."""
    site = next(env_dir.glob("lib/python*/site-packages"), None)
    installed = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in importlib.metadata.distributions(path=[str(site)] if site else [])}
    missing = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # evaluated for this interpreter: the environment's own
        version = installed.get(canonicalize_name(requirement.name))
        if requirement.extras or version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing
