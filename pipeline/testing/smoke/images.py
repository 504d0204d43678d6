"""The images a smoke runs besides the service images: the control plane and the client.

Owns the control plane's images (MariaDB, RabbitMQ, memcached and OVN's
databases: Debian's packages on the release's runtime base, from
``dockerfiles/smoke-<name>.Dockerfile``) and the client image
(python-openstackclient and the services' client plugins at the release's
upper-constraints versions: locked, downloaded on the host and installed
with ``--no-index`` like a release layer).  Each is tagged by a hash of its
inputs and made once per engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from pipeline.core import console
from pipeline.core.files import hash_inputs
from pipeline.core.releases import Project, Release
from pipeline.core.stamps import Stamp
from pipeline.image.bases import BaseImages
from pipeline.image.dependencies import requirements_text
from pipeline.image.dockerfiles import find_dockerfile
from pipeline.image.engine import context_image, context_tar, ensure_image, stream_build
from pipeline.image.packages import apt_build
from pipeline.image.wheels import (
    LockedFile,
    Target,
    compile_lock,
    fetch_files,
    locked_files,
    wheel_set,
    wheelhouse_context,
)

CONTROL_PLANE = {"mariadb": "MariaDB", "rabbitmq": "RabbitMQ", "memcached": "memcached", "ovn": "OVN northbound/southbound"}

if TYPE_CHECKING:
    from docker import APIClient


@dataclass(frozen=True)
class SmokeImages:
    control_plane: dict[str, str]  # name -> tag
    client: str  # tag
    client_versions: dict[str, str]  # the client distributions' versions (python-openstackclient ...)


def ensure_smoke_images(client: APIClient, project: Project, rel: Release, bases: BaseImages, target: Target,
                        constraints_text: str, client_requirements: list[str]) -> SmokeImages:
    """The control plane's images and the client image, made where the engine lacks them."""
    log_dir = project.layout.smoke_dir(rel.name) / "images"
    plane = {}
    for name, what in CONTROL_PLANE.items():
        dockerfile = find_dockerfile(project, rel.name, [f"smoke-{name}"]).read_bytes()
        args = {"BASE": bases.runtime_id, "PYTHON_VERSION": rel.python}
        ref = f"{project.settings.image_prefix}/smoke-{name}:{hash_inputs([dockerfile.decode(), args])[:16]}"

        def make(dockerfile: bytes = dockerfile, args: dict[str, str] = args, name: str = name, what: str = what) -> str:
            with console.step(f"smoke image {name} ({what})"):
                return apt_build(client, context_tar({"Dockerfile": dockerfile}), log_dir / f"{name}.log",
                                 f"the smoke's {what} image", args, project.network.proxy_env(), rel, {})

        ensure_image(client, project.settings, ref, make, f"the smoke's {what} image")
        plane[name] = ref
    files = client_lock(project, rel, target, constraints_text, client_requirements)
    return SmokeImages(plane, _client_image(client, project, rel, bases, target, files, log_dir),
                       {f.name: f.version for f in files if f.name in {canonicalize_name(r) for r in client_requirements}})


def client_lock(project: Project, rel: Release, target: Target, constraints_text: str,
                requirements: list[str]) -> tuple[LockedFile, ...]:
    """The client's distributions under the release's effective constraints (resolved only when they change)."""
    inputs = {"requirements": sorted(requirements), "constraints": constraints_text, "target": target.uv_platform,
              "python": target.python, "index": project.network.index_public}
    stamp = Stamp(project.layout.stamp("lock", rel.name, "smoke-client"))
    cached = stamp.current(inputs)
    if cached:
        return tuple(LockedFile(**f) for f in cached["files"])
    path = project.layout.smoke_dir(rel.name) / "client-requirements.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in requirements))
    packages = compile_lock(project, [path], constraints_text, target, f"the smoke's client ({rel.name})",
                            f"adjust overrides/{rel.name}/constraints.txt")
    files = tuple(locked_files(packages, target))
    stamp.record(inputs, {"files": [f.__dict__ for f in files]})
    return files


def _client_image(client: APIClient, project: Project, rel: Release, bases: BaseImages, target: Target,
                  files: tuple[LockedFile, ...], log_dir: Path) -> str:
    settings = project.settings
    wheels = wheel_set(project, files, target)
    requirements = requirements_text(files)
    dockerfile = find_dockerfile(project, rel.name, ["smoke-client"]).read_bytes()
    key = hash_inputs([dockerfile.decode(), requirements, wheels.digest, bases.build_id, bases.runtime_id])[:16]
    ref = f"{settings.image_prefix}/smoke-client-{rel.name}:{key}"

    def make() -> str:
        ctx, _ = context_image(client, settings, "wheels", wheels.digest,
                               lambda: wheelhouse_context(fetch_files(project, list(wheels.files))),
                               log_dir / "client-wheels.log")
        args = {"BUILD_BASE": bases.build_id, "RUNTIME_BASE": bases.runtime_id, "CTX_WHEELS": ctx}
        with console.step(f"smoke client image ({len(files)} packages)"):
            return stream_build(client, context_tar({"Dockerfile": dockerfile, "requirements.txt": requirements.encode()}),
                                log_dir / "client.log", f"the smoke's client image ({rel.name})", buildargs=args,
                                secret_args=project.network.proxy_env())

    ensure_image(client, settings, ref, make, f"the smoke's client image ({rel.name})")
    return ref
