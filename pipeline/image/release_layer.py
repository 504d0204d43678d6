"""The release layers: a chain of images holding what the release's services share.

Owns the images service images are built on: level 0 is the runtime base
plus a venv with what every service of the release installs; each further
level adds what a smaller group of them shares (see
``dependencies.shared_levels``).  A service's image starts from the deepest
level of its group, so several services share every byte they can and no
image carries a package it does not install.  Each level is tagged by a hash
of its inputs (its parent included) and built once per engine, with its build
stage (the build base with the complete venv), where service builds check
their venv.  The record is ``<workdir>/<release>/release-layer/layers.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from pipeline.core import console
from pipeline.core.files import hash_inputs, write_if_changed
from pipeline.core.releases import Project, Release
from pipeline.image.bases import BaseImages
from pipeline.image.dependencies import ServiceLock, requirements_text, shared_levels
from pipeline.image.dockerfiles import find_dockerfile, render
from pipeline.image.engine import context_image, context_tar, ensure_image, stream_build
from pipeline.image.packages import ServicePackages, ensure_packages_image
from pipeline.image.wheels import (
    LockedFile,
    Target,
    fetch_files,
    wheel_set,
    wheelhouse_context,
)


@dataclass(frozen=True)
class ReleaseLevel:
    index: int
    services: tuple[str, ...]  # the group that shares this level
    image: str  # the level's runtime image (all levels up to this one on the runtime base)
    image_id: str
    build_image: str  # the build base with the venv of all levels up to this one
    build_image_id: str
    files: tuple[LockedFile, ...]  # what this level adds
    packages: tuple[str, ...] = ()  # the Debian packages it adds (a layer below its Python packages)
    packages_image: str = ""  # the image of that layer (its parent: the level below)

    @property
    def name(self) -> str:
        return f"release level {self.index} ({len(self.services)} services)"


@dataclass(frozen=True)
class ReleaseLayers:
    release: str
    levels: tuple[ReleaseLevel, ...]

    def chain(self, service: str) -> tuple[ReleaseLevel, ...]:
        """The levels a service's image stacks: those of every group it belongs to (a prefix of the chain)."""
        return tuple(level for level in self.levels if service in level.services)

    def packages(self, service: str) -> frozenset[str]:
        """The Debian packages the levels of a service's chain install."""
        return frozenset(p for level in self.chain(service) for p in level.packages)


def ensure_release_layers(client, project: Project, rel: Release, bases: BaseImages, locks: list[ServiceLock],
                          services: list[str], target: Target, packages: Mapping[str, ServicePackages],
                          force: bool = False) -> ReleaseLayers:
    """The levels that the images of ``services`` stack, built where the engine lacks them."""
    settings = project.settings
    chain = shared_levels(locks, {name: p.names for name, p in packages.items()})
    depth = 1 + max((i for i, level in enumerate(chain) if set(services) & set(level.services)), default=0)
    log_dir = project.layout.release_layer_dir(rel.name)
    template = find_dockerfile(project, rel.name, ["release-layer"]).read_text()
    parent_build, parent_runtime, parent_key = bases.build_id, bases.runtime_id, ""
    levels: list[ReleaseLevel] = []
    for index, shared in enumerate(chain[:depth]):
        packages_image = ""
        if shared.packages:  # the level's Debian packages, below its Python packages
            origins = {p: next(packages[s].origins[p] for s in shared.services) for p in shared.packages}
            packages_image, parent_runtime = ensure_packages_image(client, project, rel, parent_runtime, origins,
                                                                   f"level-{index}", log_dir / f"level-{index}-packages.log")
            if not shared.files and levels:  # level 0 also starts the venv
                levels.append(ReleaseLevel(index, shared.services, packages_image, parent_runtime, levels[-1].build_image,
                                           parent_build, (), shared.packages, packages_image))
                parent_key = hash_inputs([parent_key, packages_image])[:16]
                continue
        dockerfile = render(template, [], {"first": index == 0, "later": index > 0})
        wheels = wheel_set(project, shared.files, target)
        requirements = requirements_text(shared.files)
        key = hash_inputs([parent_key, parent_build, parent_runtime, dockerfile, requirements, wheels.digest])[:16]
        refs = {"build": f"{settings.image_prefix}/release-{rel.name}-build:{key}",
                None: f"{settings.image_prefix}/release-{rel.name}:{key}"}

        def build(stage: str | None, wheels=wheels, dockerfile=dockerfile, requirements=requirements,
                  parents=(parent_build, parent_runtime), index=index, shared=shared, refs=refs) -> str:
            def make() -> str:
                ctx, _ = context_image(client, settings, "wheels", wheels.digest,
                                       lambda: wheelhouse_context(fetch_files(project, list(wheels.files))),
                                       log_dir / f"context-wheels-{index}.log")
                args = {"BUILD_PARENT": parents[0], "RUNTIME_PARENT": parents[1], "CTX_WHEELS": ctx, "LEVEL": str(index)}
                context = context_tar({"Dockerfile": dockerfile.encode(), "dependencies.txt": requirements.encode()})
                label = f"release level {index} of {rel.name} ({len(shared.files)} packages shared by {len(shared.services)} services)"
                with console.step(label):
                    return stream_build(client, context, log_dir / f"level-{index}-{stage or 'image'}.log", label,
                                        buildargs=args, target=stage, nocache=force and stage is not None)

            image_id, _ = ensure_image(client, settings, refs[stage], make, f"release level {index} of {rel.name}", force=force)
            return image_id

        build_id = build("build")
        image_id = build(None)
        levels.append(ReleaseLevel(index, shared.services, refs[None], image_id, refs["build"], build_id, shared.files,
                                   shared.packages, packages_image if shared.packages else ""))
        parent_build, parent_runtime, parent_key = build_id, image_id, key
    layers = ReleaseLayers(rel.name, tuple(levels))
    record = {"release": rel.name, "levels": [{**asdict(level), "files": [f.pin for f in level.files],
                                               "packages": list(level.packages)} for level in levels]}
    write_if_changed(log_dir / "layers.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    return layers
