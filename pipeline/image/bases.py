"""Base images of a release: the runtime base and the build base, content-addressed.

Owns where the runtime base starts from (``base.image`` pulled, or a Debian
root filesystem made with debootstrap on the host, trimmed like Debian's
slim images and with Python and CA certificates installed and apt's caches
removed *before* it is imported, so no later layer has to delete what
every image would still ship, and its byte code compiled again for the
mtime its sources get in the archive, so Python uses it), the two base
Dockerfiles, and their tags:
each names a hash of its inputs (parent image ID, Dockerfile, arguments, uv
binary), is built once per engine and never moved to another image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import console
from pipeline.core.errors import BaseImageError, DiskFullError
from pipeline.core.files import hash_inputs, sha256_bytes, sha256_file
from pipeline.core.releases import Project, Release
from pipeline.image import layer_cache
from pipeline.image.dockerfiles import find_dockerfile, tool_file
from pipeline.image.engine import context_tar, ensure_image, inspect, inspect_present, stream_build
from pipeline.image.packages import apt_build
from pipeline.image.wheels import Target, uv_binary, uv_wheel

ROOTFS_FORMAT = 4  # bump when the bootstrapped tree's contents change

# What Debian's slim images leave out, and what apt leaves behind.
SLIM_DPKG_CFG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
TRIM = ["var/cache/apt", "var/lib/apt/lists", "var/cache/debconf/*-old", "var/log", "usr/share/man", "usr/share/info",
        "usr/share/groff", "usr/share/lintian", "usr/share/linda", "usr/share/locale", "tmp", "var/tmp"]


@dataclass(frozen=True)
class BaseImages:
    origin: str  # what the runtime base starts from: a pulled image or a bootstrapped rootfs
    runtime: str
    runtime_id: str
    build: str
    build_id: str


def _trim_rootfs(rootfs: Path) -> None:
    for pattern in TRIM:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                for child in path.iterdir():
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            elif path.exists():
                path.unlink()
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for path in doc.rglob("*"):
            if path.is_file() and path.name != "copyright":
                path.unlink()


# Runs in the root filesystem (chroot) with its own Python: each .pyc there is compiled again from its
# source, whose mtime is now the archive's, so that Python finds it current instead of compiling the module
# at every import of every process (the byte code debootstrap's install wrote records the install's time).
RECOMPILE_SCRIPT = r"""
import importlib.util, os, py_compile, sys
count = 0
for top, _, files in os.walk("/usr"):
    for name in files:
        if not name.endswith(".pyc") or os.path.basename(top) != "__pycache__":
            continue
        cache = os.path.join(top, name)
        try:
            source = importlib.util.source_from_cache(cache)
        except ValueError:
            continue
        if not os.path.isfile(source):
            continue
        os.utime(source, (0, 0))
        level = name.split(".opt-")[1].split(".")[0] if ".opt-" in name else ""
        py_compile.compile(source, cfile=cache, dfile=source, doraise=True, optimize=int(level) if level else 0,
                           invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
        count += 1
print(f"recompiled {count} byte-code files", file=sys.stderr)
"""


def _recompile_for_archive(rootfs: Path, python: str, log_path: Path) -> None:
    """Make the root filesystem's byte code match the mtime its sources get in the archive (0)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"}  # a fixed seed: the same bytes
    command = [shutil.which("chroot") or "/usr/sbin/chroot", str(rootfs), f"/usr/bin/python{python}", "-c", RECOMPILE_SCRIPT]
    with log_path.open("a") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        shutil.rmtree(rootfs.parent, ignore_errors=True)
        raise BaseImageError(f"compiling the byte code of the bootstrapped root filesystem failed "
                             f"(exit {result.returncode})", hint=f"its output is at the end of {log_path}")


def apt_sources(rel: Release) -> str:
    """The suites an image's apt reads: the release's suite, its updates and its security updates
    (debootstrap writes only the first, so a bootstrapped image would never see a security fix)."""
    base = rel.base
    return (f"deb {base.debian_mirror} {base.debian_suite} main\n"
            f"deb {base.debian_mirror} {base.debian_suite}-updates main\n"
            f"deb {base.debian_security_mirror} {base.debian_suite}-security main\n")


def _security_updates(rootfs: Path, rel: Release, env: dict[str, str], log_path: Path) -> None:
    """Point apt at the updates and security suites and install what they fix, in the bootstrapped tree."""
    (rootfs / "etc/apt/sources.list").write_text(apt_sources(rel))
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    apt_env = {**env, "DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    with log_path.open("a") as log:
        for command in (["apt-get", "update"], ["apt-get", "-y", "--no-install-recommends", "dist-upgrade"]):
            result = subprocess.run([chroot, str(rootfs), *command], stdout=log, stderr=subprocess.STDOUT, env=apt_env)
            if result.returncode != 0:
                shutil.rmtree(rootfs.parent, ignore_errors=True)
                raise BaseImageError(f"{' '.join(command)} in the bootstrapped root filesystem failed "
                                     f"(exit {result.returncode})",
                                     hint=f"check base.debian_security_mirror in releases/{rel.name}/release.yaml and "
                                          f"the proxy settings; its output is at the end of {log_path}")


def bootstrap_rootfs(project: Project, rel: Release, log_path: Path) -> Path:
    """A trimmed Debian root filesystem with Python and CA certificates, as a tar file to import."""
    base = rel.base
    if shutil.which("debootstrap") is None:
        raise BaseImageError(f"cannot bootstrap a {base.debian_suite} root filesystem: debootstrap is not installed",
                             hint="run scripts/setup (it installs debootstrap), or set base.bootstrap: pull with a reachable registry")
    if os.geteuid() != 0:
        raise BaseImageError("debootstrap needs root to build the base root filesystem",
                             hint="run as root, or set base.bootstrap: pull with a reachable registry")
    if project.settings.offline:
        raise BaseImageError(f"no base image for {rel.name} on the engine, and offline mode forbids bootstrapping one "
                             f"from {base.debian_mirror}", hint="run once without --offline")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="rootfs-"))
    rootfs = scratch / "rootfs"
    env = {**os.environ, **project.network.proxy_env()}
    packages = f"python{rel.python},ca-certificates"
    for attempt in (1, 2):
        with log_path.open("w" if attempt == 1 else "a") as log:
            result = subprocess.run(["debootstrap", "--variant=minbase", f"--include={packages}", base.debian_suite,
                                     str(rootfs), base.debian_mirror], stdout=log, stderr=subprocess.STDOUT, env=env)
        # A mirror or proxy that drops one download fails the whole bootstrap (seen on a CI run): once more.
        if result.returncode == 0 or attempt == 2 or "Couldn't download" not in log_path.read_text(errors="replace"):
            break
        console.note(f"debootstrap could not download a package from {base.debian_mirror}; trying once more")
        shutil.rmtree(rootfs, ignore_errors=True)
    if result.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        tail = "\n    ".join(log_path.read_text(errors="replace").splitlines()[-5:])
        if "No space left" in tail:
            raise DiskFullError("no space left on the device while bootstrapping the base root filesystem",
                                hint=f"free space in {tempfile.gettempdir()}, then rerun")
        raise BaseImageError(
            f"debootstrap of {base.debian_suite} from {base.debian_mirror} failed (exit {result.returncode}):\n    {tail}",
            hint=f"check releases/{rel.name}/release.yaml base.debian_mirror and the proxy settings; full log: {log_path}",
        )
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/openstack-patches-slim").write_text(SLIM_DPKG_CFG)
    _security_updates(rootfs, rel, env, log_path)
    _trim_rootfs(rootfs)
    _recompile_for_archive(rootfs, rel.python, log_path)
    archive = scratch / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "--sort=name", "--mtime=@0", "-cf", str(archive), "."],
                   check=True)
    shutil.rmtree(rootfs, ignore_errors=True)
    return archive


def _origin(client, project: Project, rel: Release, log_dir: Path) -> str:
    """The image the runtime base starts from; pulls or bootstraps as configured."""
    import docker.errors
    import docker.utils

    base = rel.base
    settings = project.settings
    rootfs_ref = f"{settings.image_prefix}/rootfs:{base.debian_suite}-" + hash_inputs(
        ["minbase", base.debian_suite, base.debian_mirror, rel.python, ROOTFS_FORMAT, SLIM_DPKG_CFG, apt_sources(rel)])[:12]

    def bootstrap() -> str:
        with console.step(f"bootstrap {rootfs_ref} from {base.debian_mirror}"):
            archive = bootstrap_rootfs(project, rel, log_dir / "rootfs.log")
            try:
                digest = sha256_file(archive)
                repository, _, version = rootfs_ref.rpartition(":")
                client.import_image_from_file(str(archive), repository=repository, tag=version)
            finally:
                shutil.rmtree(archive.parent, ignore_errors=True)
            imported = inspect_present(client, rootfs_ref)
            # An import keeps the archive as it came: its one layer's diff ID is the archive's sha256.
            if imported["RootFS"]["Layers"] != [f"sha256:{digest}"]:
                client.remove_image(rootfs_ref)
                raise BaseImageError(f"the engine's image of the bootstrapped root filesystem is not the archive "
                                     f"that was sent (its layer is not sha256:{digest[:16]}...)",
                                     hint="check the engine (`docker info`, its storage), then rerun")
            return imported["Id"]

    mode = base.bootstrap
    if mode in ("pull", "auto") and inspect(client, base.image):
        return base.image
    if mode == "debootstrap" or (mode == "auto" and (
            inspect(client, rootfs_ref) or settings.offline
            or layer_cache.fetch(client, settings, rootfs_ref, "the base root filesystem"))):
        ensure_image(client, settings, rootfs_ref, bootstrap, "the base root filesystem")
        return rootfs_ref
    if settings.offline:
        raise BaseImageError(f"{base.image} is not on the engine, and offline mode forbids pulling it",
                             hint="run once without --offline, or set base.bootstrap: debootstrap with a bootstrapped root filesystem")
    repository, version = docker.utils.parse_repository_tag(base.image)
    try:
        with console.step(f"pull {base.image}"):
            client.pull(repository, tag=version or "latest")
        return base.image
    except docker.errors.APIError as exc:
        if mode == "pull":
            raise BaseImageError(f"cannot pull base image {base.image}: {exc.explanation or exc}",
                                 hint="check the registry, or set base.bootstrap: debootstrap (or auto) in "
                                      f"releases/{rel.name}/release.yaml") from None
        console.note(f"{base.image} cannot be pulled; bootstrapping from {base.debian_mirror} instead")
    ensure_image(client, settings, rootfs_ref, bootstrap, "the base root filesystem")
    return rootfs_ref


def ensure_bases(client, project: Project, rel: Release, target: Target) -> BaseImages:
    """Runtime and build base images of a release, built only when their inputs changed."""
    settings = project.settings
    prefix = settings.image_prefix
    log_dir = project.layout.base_logs(rel.name)
    proxies = project.network.proxy_env()
    origin = _origin(client, project, rel, log_dir)
    origin_id = inspect_present(client, origin)["Id"]

    runtime_file = find_dockerfile(project, rel.name, ["base-runtime"])
    runtime_args = {"BASE_IMAGE": origin_id, "PYTHON_VERSION": rel.python}
    runtime_ref = f"{prefix}/base-runtime:" + hash_inputs([runtime_file.read_text(), runtime_args])[:16]

    def make_runtime() -> str:
        with console.step(f"base image {runtime_ref}"):
            return stream_build(client, context_tar({"Dockerfile": runtime_file.read_bytes()}),
                                log_dir / "base-runtime.log", f"base-runtime {rel.name}", buildargs=runtime_args,
                                secret_args=proxies)

    runtime_id, _ = ensure_image(client, settings, runtime_ref, make_runtime, "the runtime base")

    uv = uv_wheel(project, target)
    build_file = find_dockerfile(project, rel.name, ["base-build"])
    build_args = {"RUNTIME_BASE": runtime_id, "PYTHON_VERSION": rel.python,
                  "BUILD_PACKAGES": " ".join(rel.runtime.build_packages)}
    build_ref = f"{prefix}/base-build:" + hash_inputs([build_file.read_text(), build_args, uv.sha256,
                                                       sha256_bytes(tool_file("venv-layer"))])[:16]

    def make_build() -> str:
        with console.step(f"base image {build_ref}"):
            binary = uv_binary(project, uv)
            context = context_tar({"Dockerfile": build_file.read_bytes(), "uv": binary, "venv-layer": tool_file("venv-layer")},
                                  executables=frozenset({"uv", "venv-layer"}))
            return apt_build(client, context, log_dir / "base-build.log", f"base-build {rel.name}", build_args,
                             proxies, rel, dict.fromkeys(rel.runtime.build_packages, f"build_packages in {rel.runtime.path}"))

    build_id, _ = ensure_image(client, settings, build_ref, make_build, "the build base")
    return BaseImages(origin, runtime_ref, runtime_id, build_ref, build_id)

