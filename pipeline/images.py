"""Images stage: base images, service Dockerfiles and builds through the Docker Engine API.

Owns the engine connection (docker-py), the per-release runtime and build
base images (pulled, or bootstrapped from Debian packages), the lookup and
rendering of Dockerfiles in ``dockerfiles/``, the emulated named build
contexts for patched trees, the dependency lock of each service, image tags
and labels, and the build record ``<workdir>/<release>/<service>/image.json``.
"""

from __future__ import annotations

import io
import os
import platform
import re
import shutil
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from packaging.utils import canonicalize_name

from . import console
from .config import PROJECT_ROOT, Project, Release
from .errors import BaseImageError, ConfigError, DockerUnavailableError, ImageBuildError, PushError
from .stamps import Stamp, hash_inputs, read_json, sha256_bytes, write_json

UV_VERSION = "0.13.9"
LABEL_NS = "io.openstack-patches"
LIBRARY_LINE = "#@library "
RECORD_FORMAT = 2  # bump when image.json gains keys that later stages rely on


# --- engine ----------------------------------------------------------------------


def connect() -> docker.APIClient:
    """A client for the engine at DOCKER_HOST or the local socket, or a clear error."""
    try:
        client = docker.APIClient(version="auto", timeout=3600, **docker.utils.kwargs_from_env())
        client.ping()
        return client
    except Exception as exc:  # docker-py raises several unrelated types here
        where = os.environ.get("DOCKER_HOST") or "the local socket (/var/run/docker.sock)"
        raise DockerUnavailableError(
            f"no Docker engine answers at {where}: {exc.__class__.__name__}",
            hint="start the Docker engine (e.g. `dockerd &` as root, or `systemctl start docker`) or set DOCKER_HOST",
        ) from None


def inspect(client: docker.APIClient, ref: str) -> dict | None:
    try:
        return client.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code == 404:
            return None
        raise


# --- build contexts and streaming builds ------------------------------------------------


def context_tar(files: dict[str, bytes], trees: dict[str, Path] | None = None) -> io.BytesIO:
    """A build context: in-memory files plus whole directories (ownership and mtimes normalised)."""
    buffer = io.BytesIO()

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = normalise(tarfile.TarInfo(name))
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for prefix, tree in sorted((trees or {}).items()):
            for path in sorted(tree.rglob("*")):
                arcname = str(Path(prefix) / path.relative_to(tree)) if prefix else str(path.relative_to(tree))
                tar.add(path, arcname=arcname, recursive=False, filter=normalise)
    buffer.seek(0)
    return buffer


_print_lock = threading.Lock()


def stream_build(
    client: docker.APIClient,
    context: io.BytesIO,
    tag: str,
    log_path: Path,
    what: str,
    buildargs: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    nocache: bool = False,
    dockerfile: str = "Dockerfile",
) -> str:
    """Run one build, logging everything to ``log_path``; return the image ID.

    docker-py reports a failed step as an ``{"error": ...}`` item instead of
    raising, so every item is checked.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    image_id = None
    last_step = "(before the first step)"
    with log_path.open("w", encoding="utf-8") as log:
        try:
            stream = client.build(
                fileobj=context, custom_context=True, tag=tag, dockerfile=dockerfile,
                buildargs=buildargs or {}, labels=labels or {}, rm=True, forcerm=True,
                nocache=nocache, pull=False, decode=True, use_config_proxy=False,
            )
            for item in stream:
                if "stream" in item:
                    text = item["stream"]
                    log.write(text)
                    match = re.match(r"^Step (\d+/\d+) : (.*)$", text.strip())
                    if match:
                        last_step = f"step {match.group(1)}: {match.group(2)}"
                        if match.group(2).startswith(("RUN", "COPY")):  # the steps that take time
                            with _print_lock:
                                console.info(f"  [{what}] {last_step[:110]}")
                elif "error" in item:
                    log.write(f"ERROR: {item['error']}\n")
                    raise ImageBuildError(
                        f"{what}: image build failed at {last_step}\n    {item['error'].strip()}",
                        hint=f"full build log: {log_path}",
                    )
                elif "aux" in item and "ID" in item["aux"]:
                    image_id = item["aux"]["ID"]
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"{what}: the engine refused the build: {exc.explanation or exc}",
                                  hint=f"build log: {log_path}") from None
    if image_id is None:
        image_id = inspect(client, tag)["Id"]
    return image_id


# --- Dockerfiles -----------------------------------------------------------------------


def find_dockerfile(project: Project, release: str, names: Iterable[str]) -> Path:
    """First match of ``dockerfiles/<release>/<name>.Dockerfile``, then ``dockerfiles/<name>.Dockerfile``.

    Names are tried in order (e.g. ``nova`` then ``service``), in the project
    repository first and then among the tool's own Dockerfiles, so a release
    only carries the files where it differs.
    """
    roots = [project.settings.root / "dockerfiles"]
    if PROJECT_ROOT / "dockerfiles" not in roots:
        roots.append(PROJECT_ROOT / "dockerfiles")
    tried = []
    for name in names:
        for root in roots:
            for candidate in (root / release / f"{name}.Dockerfile", root / f"{name}.Dockerfile"):
                tried.append(candidate)
                if candidate.is_file():
                    return candidate
    raise ConfigError(f"no Dockerfile for {' / '.join(names)} in release {release}",
                      hint="looked for: " + ", ".join(str(t) for t in tried))


@dataclass(frozen=True)
class LibraryContext:
    name: str
    version: str
    tree: str
    head: str
    image: str = ""  # tag of the emulated named-context image

    @property
    def arg(self) -> str:
        return re.sub(r"[^A-Z0-9]", "_", self.name.upper())


def render_dockerfile(template: str, libraries: Iterable[LibraryContext]) -> str:
    """Expand every ``#@library`` line once per library, in order, grouping consecutive lines."""
    out: list[str] = []
    block: list[str] = []
    libs = list(libraries)

    def flush() -> None:
        for lib in libs:
            out.extend(line.replace("{lib_arg}", lib.arg).replace("{lib_version}", lib.version).replace("{lib}", lib.name)
                       for line in block)
        block.clear()

    for line in template.splitlines():
        if line.startswith(LIBRARY_LINE):
            block.append(line[len(LIBRARY_LINE):])
            continue
        flush()
        out.append(line)
    flush()
    return "\n".join(out) + "\n"


# --- base images ---------------------------------------------------------------------


@dataclass(frozen=True)
class BaseImages:
    origin: str  # what the runtime base starts from: a pulled image or a bootstrapped rootfs
    runtime: str
    runtime_id: str
    build: str
    build_id: str


def build_ca_bundle(project: Project) -> bytes:
    """The CA bundle given to build steps: ``ca_bundle``, else the host's default bundle."""
    if project.settings.ca_bundle:
        path = project.settings.ca_bundle
    else:
        paths = ssl.get_default_verify_paths()
        candidate = os.environ.get("SSL_CERT_FILE") or paths.cafile or paths.openssl_cafile
        path = Path(candidate) if candidate else None
    if path and path.is_file():
        return path.read_bytes()
    if project.settings.ca_bundle:
        raise ConfigError(f"ca_bundle {project.settings.ca_bundle} does not exist")
    return b""


def _bootstrap_rootfs(client: docker.APIClient, project: Project, rel: Release, tag: str, log_path: Path) -> None:
    base = rel.base
    if shutil.which("debootstrap") is None:
        raise BaseImageError(
            f"cannot bootstrap a {base.debian_suite} root filesystem: debootstrap is not installed",
            hint="apt-get install debootstrap, or set base.bootstrap: pull with a reachable registry",
        )
    if os.geteuid() != 0:
        raise BaseImageError("debootstrap needs root to build the base root filesystem",
                             hint="run as root, or set base.bootstrap: pull with a reachable registry")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        with log_path.open("w") as log:
            result = subprocess.run(
                ["debootstrap", "--variant=minbase", base.debian_suite, str(rootfs), base.debian_mirror],
                stdout=log, stderr=subprocess.STDOUT,
            )
        if result.returncode != 0:
            tail = "\n    ".join(log_path.read_text(errors="replace").splitlines()[-5:])
            raise BaseImageError(
                f"debootstrap of {base.debian_suite} from {base.debian_mirror} failed (exit {result.returncode}):\n    {tail}",
                hint=f"check releases/{rel.name}/release.yaml base.debian_mirror; full log: {log_path}",
            )
        archive = Path(scratch) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."], check=True)
        repository, _, version = tag.rpartition(":")
        client.import_image_from_file(str(archive), repository=repository, tag=version)


def _base_origin(client: docker.APIClient, project: Project, rel: Release, log_dir: Path) -> str:
    """The image the runtime base starts from; pulls or bootstraps as configured."""
    base = rel.base
    rootfs_tag = f"{project.settings.image_prefix}/rootfs:{base.debian_suite}-" + hash_inputs(
        ["minbase", base.debian_suite, base.debian_mirror])[:12]
    mode = base.bootstrap
    if mode in ("pull", "auto") and inspect(client, base.image):
        return base.image
    if mode == "debootstrap" or (mode == "auto" and inspect(client, rootfs_tag)):
        if not inspect(client, rootfs_tag):
            with console.step(f"bootstrap {rootfs_tag} from {base.debian_mirror}"):
                _bootstrap_rootfs(client, project, rel, rootfs_tag, log_dir / "rootfs.log")
        return rootfs_tag
    repository, tag = docker.utils.parse_repository_tag(base.image)
    try:
        with console.step(f"pull {base.image}"):
            client.pull(repository, tag=tag or "latest")
        return base.image
    except docker.errors.APIError as exc:
        if mode == "pull":
            raise BaseImageError(
                f"cannot pull base image {base.image}: {exc.explanation or exc}",
                hint=f"check the registry, or set base.bootstrap: debootstrap (or auto) in releases/{rel.name}/release.yaml",
            ) from None
        console.info(f"  {base.image} cannot be pulled; bootstrapping from {base.debian_mirror} instead")
    with console.step(f"bootstrap {rootfs_tag} from {base.debian_mirror}"):
        _bootstrap_rootfs(client, project, rel, rootfs_tag, log_dir / "rootfs.log")
    return rootfs_tag


_base_lock = threading.Lock()


def ensure_bases(client: docker.APIClient, project: Project, release: str) -> BaseImages:
    """Runtime and build base images of a release, built only when their inputs changed."""
    with _base_lock:  # parallel service builds share one set of bases
        return _ensure_bases(client, project, release)


def _ensure_bases(client: docker.APIClient, project: Project, release: str) -> BaseImages:
    rel = project.release(release)
    prefix = project.settings.image_prefix
    log_dir = project.settings.workdir / release / "base"
    origin = _base_origin(client, project, rel, log_dir)
    origin_id = inspect(client, origin)["Id"]

    runtime_file = find_dockerfile(project, release, ["base-runtime"])
    runtime_args = {"BASE_IMAGE": origin, "PYTHON_VERSION": rel.python}
    runtime_tag = f"{prefix}/base-runtime:" + hash_inputs([origin_id, runtime_file.read_text(), runtime_args])[:16]
    runtime = inspect(client, runtime_tag)
    if runtime is None:
        with console.step(f"base image {runtime_tag}"):
            runtime_id = stream_build(client, context_tar({"Dockerfile": runtime_file.read_bytes()}), runtime_tag,
                                      log_dir / "base-runtime.log", "base-runtime", buildargs=runtime_args)
    else:
        runtime_id = runtime["Id"]

    ca = build_ca_bundle(project)
    build_file = find_dockerfile(project, release, ["base-build"])
    build_args = {"RUNTIME_BASE": runtime_tag, "PYTHON_VERSION": rel.python, "UV_VERSION": UV_VERSION,
                  "INDEX_URL": project.settings.index_url}
    build_tag = f"{prefix}/base-build:" + hash_inputs([runtime_id, build_file.read_text(), build_args, sha256_bytes(ca)])[:16]
    build = inspect(client, build_tag)
    if build is None:
        with console.step(f"base image {build_tag}"):
            build_id = stream_build(client, context_tar({"Dockerfile": build_file.read_bytes(), "build-ca.crt": ca}),
                                    build_tag, log_dir / "base-build.log", "base-build", buildargs=build_args)
    else:
        build_id = build["Id"]
    client.tag(runtime_id, f"{prefix}/base-runtime", release)
    client.tag(build_id, f"{prefix}/base-build", release)
    return BaseImages(origin, runtime_tag, runtime_id, build_tag, build_id)


# --- named contexts ------------------------------------------------------------------------

CONTEXT_DOCKERFILE = b"FROM scratch\nCOPY . /\n"


def ensure_context_image(client: docker.APIClient, project: Project, name: str, tree: Path, head: str,
                         log_path: Path) -> tuple[str, bool]:
    """The patched tree as a ``FROM scratch`` image tagged by its commit: (tag, whether it was built now)."""
    tag = f"{project.settings.image_prefix}/context-{canonicalize_name(name)}:{head[:20]}"
    if inspect(client, tag) is not None:
        return tag, False
    context = context_tar(
        {".context.Dockerfile": CONTEXT_DOCKERFILE, ".dockerignore": b".context.Dockerfile\n.dockerignore\n"},
        {"": tree},
    )
    stream_build(client, context, tag, log_path, f"context {name}", dockerfile=".context.Dockerfile")
    return tag, True


# --- dependency lock -------------------------------------------------------------------------


def _uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except Exception:
        found = shutil.which("uv")
        if not found:
            raise ConfigError("uv is not installed", hint="pip install uv (it is a dependency of this project)") from None
        return found


def compile_lock(project: Project, release: str, requirements: list[Path], constraints: str, what: str) -> str:
    """Resolve ``requirements`` under ``constraints`` for the image's Python and platform."""
    if not requirements:
        return ""
    rel = project.release(release)
    platform_tag = f"{platform.machine()}-manylinux_2_36"
    with tempfile.TemporaryDirectory(prefix="lock-") as scratch:
        constraints_file = Path(scratch) / "constraints.txt"
        constraints_file.write_text(constraints)
        cmd = [_uv_binary(), "pip", "compile", "--quiet", "--no-header", "--no-annotate",
               "--python-version", rel.python, "--python-platform", platform_tag,
               "--index-url", project.settings.index_url, "-c", str(constraints_file)]
        cmd += [str(req) for req in requirements]
        env = dict(os.environ)
        if project.settings.ca_bundle:
            env["SSL_CERT_FILE"] = str(project.settings.ca_bundle)
        if project.settings.offline:
            cmd.append("--offline")
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise ConfigError(
            f"{what}: dependencies cannot be resolved under the effective constraints of {release}:\n    "
            + "\n    ".join(result.stderr.strip().splitlines()[-8:]),
            hint=f"adjust overrides/{release}/constraints.txt (an override may conflict with another pin)",
        )
    return result.stdout


def lock_names(lock: str) -> dict[str, str]:
    pins = {}
    for line in lock.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line.strip())
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


# --- service images ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceInput:
    """One patched tree that goes into an image."""

    component: str
    version: str
    tree: Path
    head: str
    origin: str
    upstream_revision: str | None
    patches: tuple[dict[str, str], ...]


@dataclass
class BuildResult:
    service: str
    release: str
    action: str  # built | up to date
    record: dict[str, Any]
    build_calls: int = 0
    seconds: float = 0.0
    record_path: Path = field(default_factory=Path)


def image_dir(project: Project, release: str, service: str) -> Path:
    return project.settings.workdir / release / service


def dependency_lock(project: Project, release: str, service: SourceInput, libraries: dict[str, SourceInput],
                    constraints_text: str) -> tuple[str, list[str]]:
    """(dependencies.txt, patched libraries the service needs), cached by their inputs.

    The libraries are found from the service's resolved dependency closure, so
    a patched library reaches exactly the images that depend on it.
    """
    def requirements(tree: Path) -> list[Path]:
        path = tree / "requirements.txt"
        return [path] if path.exists() else []

    inputs = {
        "service": [service.component, (service.tree / "requirements.txt").read_text() if requirements(service.tree) else ""],
        "libraries": {n: [s.version, "".join(p.read_text() for p in requirements(s.tree))] for n, s in libraries.items()},
        "constraints": sha256_bytes(constraints_text.encode()),
        "index": project.settings.index_url,
        "python": project.release(release).python,
    }
    stamp = Stamp(project.settings.workdir / ".stamps" / "lock" / release / f"{service.component}.json")
    cached = stamp.current(hash_inputs(inputs))
    if cached:
        return cached["dependencies"], cached["libraries"]

    by_pypi = {canonicalize_name(project.settings.pypi_name(n)): n for n in libraries}
    # Resolve as if each library were at its upstream release, so the closure matches what gets installed;
    # an unreleased (.dev) version is not on the index and stays unpinned.
    pins = "".join(f"{project.settings.pypi_name(n)}=={s.version}\n" for n, s in libraries.items() if ".dev" not in s.version)
    needed: list[str] = []
    for _ in range(len(libraries) + 1):  # each round can only add libraries
        reqs = requirements(service.tree) + [r for n in needed for r in requirements(libraries[n].tree)]
        lock = compile_lock(project, release, reqs, constraints_text + pins, service.component)
        found = sorted(by_pypi[name] for name in lock_names(lock) if name in by_pypi)
        if found == needed:
            break
        needed = found
    built_here = set(by_pypi) | {canonicalize_name(project.settings.pypi_name(service.component))}
    dependencies = "".join(f"{name}=={version}\n" for name, version in sorted(lock_names(lock).items()) if name not in built_here)
    stamp.record(hash_inputs(inputs), {"dependencies": dependencies, "libraries": needed})
    return dependencies, needed


def _labels(project: Project, release: str, service: SourceInput, libs: list[SourceInput], bases: BaseImages,
            constraints_sha: str, patches: list[dict[str, str]]) -> dict[str, str]:
    labels = {
        "org.opencontainers.image.title": service.component,
        "org.opencontainers.image.source": service.origin,
        "org.opencontainers.image.revision": service.upstream_revision or service.head,
        "org.opencontainers.image.version": service.version,
        "org.opencontainers.image.base.name": bases.runtime,
        f"{LABEL_NS}.release": release,
        f"{LABEL_NS}.patches": str(len(patches)),
        f"{LABEL_NS}.patches.sha256": hash_inputs([[p["component"], p["file"], p["sha256"]] for p in patches]),
        f"{LABEL_NS}.constraints.sha256": constraints_sha,
        f"{LABEL_NS}.libraries": ",".join(f"{lib.component}=={lib.version}" for lib in libs),
    }
    defaults = project.release(release).service_defaults.get(service.component, {})
    for key, value in sorted(defaults.items()):
        labels[f"{LABEL_NS}.default.{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return labels


def build_service(
    project: Project,
    release: str,
    service: SourceInput,
    libraries: dict[str, SourceInput],
    constraints_path: Path,
    force: bool = False,
) -> BuildResult:
    """Build (or reuse) one service image and write its build record."""
    started = time.monotonic()
    client = connect()
    out_dir = image_dir(project, release, service.component)
    record_path = out_dir / "image.json"
    constraints_text = constraints_path.read_text()
    dependencies, needed = dependency_lock(project, release, service, libraries, constraints_text)
    libs = [libraries[n] for n in needed]
    bases = ensure_bases(client, project, release)

    template = find_dockerfile(project, release, [service.component, "service"])
    contexts = [LibraryContext(lib.component, lib.version, str(lib.tree), lib.head) for lib in libs]
    dockerfile = render_dockerfile(template.read_text(), contexts)
    patches = [dict(p, component=src.component) for src in [*libs, service] for p in src.patches]
    constraints_sha = sha256_bytes(constraints_text.encode())
    labels = _labels(project, release, service, libs, bases, constraints_sha, patches)
    inputs = {
        "dockerfile": dockerfile, "dependencies": dependencies, "constraints": constraints_sha,
        "bases": [bases.runtime_id, bases.build_id], "service": [service.head, service.version],
        "libraries": [[lib.component, lib.head, lib.version] for lib in libs], "labels": labels,
        "index": project.settings.index_url, "record_format": RECORD_FORMAT,
    }
    input_hash = hash_inputs(inputs)
    name = f"{project.settings.image_prefix}/{service.component}"
    immutable = f"{service.version}-p{len(patches)}-{input_hash[:12]}"
    previous = read_json(record_path)
    if not force and previous and previous.get("input_hash") == input_hash and inspect(client, previous["image_id"]):
        client.tag(previous["image_id"], name, release)
        return BuildResult(service.component, release, "up to date", previous, 0, time.monotonic() - started, record_path)

    record_path.unlink(missing_ok=True)  # never leave a record that claims an older success
    build_calls = 0
    lib_images = {}
    for lib in libs:
        lib_images[lib.component], built = ensure_context_image(client, project, lib.component, lib.tree, lib.head,
                                                                out_dir / f"context-{lib.component}.log")
        build_calls += built
    service_ctx, built = ensure_context_image(client, project, service.component, service.tree, service.head,
                                              out_dir / "context.log")
    build_calls += built

    buildargs = {
        "BUILD_BASE": bases.build, "RUNTIME_BASE": bases.runtime, "CTX_SERVICE": service_ctx,
        "PYTHON_VERSION": project.release(release).python, "INDEX_URL": project.settings.index_url,
        "SERVICE_VERSION": service.version,
        **{f"CTX_{c.arg}": lib_images[c.name] for c in contexts},
    }
    context = context_tar({
        "Dockerfile": dockerfile.encode(),
        "dependencies.txt": dependencies.encode(),
        "upper-constraints.txt": constraints_text.encode(),
    })
    write_json(out_dir / "build-inputs.json", {"buildargs": buildargs, "inputs": inputs})
    (out_dir / "Dockerfile").write_text(dockerfile)
    image_id = stream_build(client, context, f"{name}:{immutable}", out_dir / "build.log",
                            f"{release}/{service.component}", buildargs=buildargs, labels=labels, nocache=force)
    build_calls += 1
    client.tag(image_id, name, release)
    record = {
        "service": service.component,
        "release": release,
        "image": name,
        "image_id": image_id,
        "tags": [f"{name}:{immutable}", f"{name}:{release}"],
        "labels": labels,
        "input_hash": input_hash,
        "version": service.version,
        "head": service.head,
        "tree": str(service.tree),
        "upstream_revision": service.upstream_revision,
        "source": service.origin,
        "patches": patches,
        "libraries": {lib.component: {"version": lib.version, "head": lib.head, "context_image": lib_images[lib.component],
                                      "patches": len(lib.patches)} for lib in libs},
        "bases": asdict(bases),
        "constraints": {"path": str(constraints_path), "sha256": constraints_sha},
        "build_log": str(out_dir / "build.log"),
    }
    write_json(record_path, record)
    return BuildResult(service.component, release, "built", record, build_calls, time.monotonic() - started, record_path)


def push(project: Project, record_path: Path) -> dict[str, str]:
    """Push an image's tags to the configured registry; return tag -> registry digest."""
    registry = project.settings.registry
    record = read_json(record_path)
    client = connect()
    digests = {}
    for tag_ref in record["tags"]:
        repository, _, tag = tag_ref.rpartition(":")
        target = f"{registry}/{repository}"
        client.tag(record["image_id"], target, tag)
        try:
            items = list(client.push(target, tag=tag, stream=True, decode=True))
        except docker.errors.APIError as exc:
            items = [{"error": exc.explanation or str(exc)}]
        for item in items:
            if "error" in item:
                raise PushError(f"push of {target}:{tag} failed: {item['error'].strip()}",
                                hint=f"check that {registry} is reachable and accepts pushes; the local image is built")
            digest = item.get("aux", {}).get("Digest")
            if digest:
                digests[f"{target}:{tag}"] = digest
    record["pushed"] = digests
    write_json(record_path, record)
    return digests
