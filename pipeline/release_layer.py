"""The release layer: one image per release holding the dependencies all its services share.

Owns the image every service image of a release is built on: the runtime
base plus a venv with the release's shared set (see ``dependencies``),
tagged by a hash of its inputs and built once per engine, and its build
stage (the build base with the same venv), where service builds check the
complete venv.  Its record is ``<workdir>/<release>/release-layer/layer.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from . import console
from .bases import BaseImages
from .config import Project, Release
from .dependencies import ServiceLock, requirements_text, shared_files
from .dockerfiles import find_dockerfile
from .engine import context_image, context_tar, ensure_image, stream_build
from .files import hash_inputs, write_if_changed
from .wheels import LockedFile, Target, fetch_files, wheel_set, wheelhouse_context


@dataclass(frozen=True)
class ReleaseLayer:
    release: str
    image: str  # runtime base + shared venv: the base of the release's service images
    image_id: str
    build_image: str  # build base + shared venv
    build_image_id: str
    files: tuple[LockedFile, ...]

    def packages(self) -> list[str]:
        return [f.pin for f in self.files]


def ensure_release_layer(client, project: Project, rel: Release, bases: BaseImages, locks: list[ServiceLock],
                         target: Target, force: bool = False) -> ReleaseLayer:
    settings = project.settings
    layout = project.layout
    files = shared_files(locks)
    wheels = wheel_set(project, files, target)
    requirements = requirements_text(files)
    dockerfile = find_dockerfile(project, rel.name, ["release-layer"])
    key = hash_inputs([bases.runtime_id, bases.build_id, dockerfile.read_text(), requirements, wheels.digest])[:16]
    final_ref = f"{settings.image_prefix}/release-{rel.name}:{key}"
    build_ref = f"{settings.image_prefix}/release-{rel.name}-build:{key}"
    log_dir = layout.release_layer_dir(rel.name)

    def wheels_ref() -> str:
        def make_context():
            return wheelhouse_context(fetch_files(project, list(wheels.files)))

        ref, _ = context_image(client, settings, "wheels", wheels.digest, make_context, log_dir / "context-wheels.log")
        return ref

    def build(target_stage: str | None, ref: str) -> str:
        def make() -> str:
            args = {"BUILD_BASE": bases.build_id, "RUNTIME_BASE": bases.runtime_id, "CTX_WHEELS": wheels_ref()}
            context = context_tar({"Dockerfile": dockerfile.read_bytes(), "dependencies.txt": requirements.encode()})
            with console.step(f"release layer {ref} ({len(files)} shared packages)"):
                return stream_build(client, context, log_dir / f"{target_stage or 'image'}.log",
                                    f"release layer {rel.name}", buildargs=args, target=target_stage,
                                    nocache=force and target_stage is not None)
        image_id, _ = ensure_image(client, settings, ref, make, f"the release layer of {rel.name}", force=force)
        return image_id

    build_id = build("build", build_ref)
    image_id = build(None, final_ref)
    layer = ReleaseLayer(rel.name, final_ref, image_id, build_ref, build_id, files)
    record = {**asdict(layer), "files": [asdict(f) | {"url": None} for f in files]}
    write_if_changed(log_dir / "layer.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    return layer
