"""The plan of a service image: everything its build needs, decided before the engine is asked for anything.

Owns ``plan_service``: the image's layers on the release layers (its own
Debian packages, its runtime files, its own dependencies, each patched
library and the patched service), the rendered Dockerfile, the build context
and the named contexts, build arguments, labels (the processes' commands
among them), the input hash and tags, and the record the build will write.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.constraints.effective import ConstraintsRecord
from pipeline.core.files import (
    hash_inputs,
    sha256_bytes,
)
from pipeline.core.redact import public_url
from pipeline.core.releases import Project
from pipeline.core.runtime import ServiceRuntime, runtime_archive
from pipeline.core.stamps import input_hash, tool_id
from pipeline.image.bases import BaseImages
from pipeline.image.dependencies import ServiceLock, requirements_text
from pipeline.image.dockerfiles import LibrarySlot, find_dockerfile, render
from pipeline.image.packages import ServicePackages, packages_ref
from pipeline.image.record import FORMAT as record_format
from pipeline.image.record import ImageRecord
from pipeline.image.release_layer import ReleaseLayers
from pipeline.image.tree_layer import TreeLayer
from pipeline.image.wheels import (
    LockedFile,
    Target,
    fetch_files,
    wheel_set,
    wheelhouse_context,
)
from pipeline.patches.records import PreparedTree

LABEL_NS = "io.openstack-patches"


def _labels(project: Project, release: str, service: PreparedTree, libs: list[PreparedTree], base: str,
            constraints: ConstraintsRecord, patches: list[dict]) -> dict[str, str]:
    source = service.source
    labels = {
        "org.opencontainers.image.title": service.component,
        "org.opencontainers.image.source": public_url(source.origin),
        "org.opencontainers.image.revision": source.upstream_revision or service.head,
        "org.opencontainers.image.version": source.version,
        "org.opencontainers.image.base.name": base,
        f"{LABEL_NS}.release": release,
        f"{LABEL_NS}.patches": str(len(patches)),
        f"{LABEL_NS}.patches.sha256": hash_inputs([[p["component"], p["file"], p["sha256"]] for p in patches]),
        f"{LABEL_NS}.constraints.sha256": constraints.sha256,
        f"{LABEL_NS}.libraries": ",".join(f"{lib.component}=={lib.source.version}" for lib in libs),
    }
    defaults = project.release(release).service_defaults.get(service.component, {})
    for key, value in sorted(defaults.items()):
        labels[f"{LABEL_NS}.default.{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return labels


@dataclass(frozen=True)
class NamedContext:
    """One named build context of a service image: a set of package files.

    docker-py gets it as a context image (``image``, tagged by ``digest``,
    passed in the build argument ``arg``); BuildKit and buildah get a
    directory of the files as ``--build-context <stage>=DIR``, which replaces
    the stage of that name in the Dockerfile.
    """

    stage: str  # the Dockerfile stage it stands for
    arg: str  # the CTX_* build argument naming its context image
    image: str  # the context image's name (<prefix>/context-<image>)
    digest: str
    files: tuple[LockedFile, ...] = ()

    def make(self, project: Project) -> io.BytesIO:
        """The context image's build context."""
        return wheelhouse_context(fetch_files(project, list(self.files)))


@dataclass
class ServicePlan:
    """Everything one service image build needs, decided before the engine is asked for anything."""

    service: str
    release: str
    dockerfile: str
    dependencies: str
    buildargs: dict[str, str]
    labels: dict[str, str]
    input_hash: str
    tags: tuple[str, str]  # immutable, moving
    contexts: list[NamedContext]
    trees: dict[str, TreeLayer]  # the patched trees' layers, by their folder in the build context (trees/<name>/)
    record: ImageRecord  # without its image ID
    runtime: bytes = b""  # runtime.tar of the build context: /etc/<service>, /var/lib/<service>, httpd configurations
    packages_image: PackagesImage | None = None  # the service's own Debian packages, when it has any

    def tree_files(self) -> dict[str, Path]:
        """The trees' archives by their path in the build context."""
        return {f"trees/{tree}/{archive.name}": archive for tree, layer in self.trees.items()
                for archive in (layer.archive, layer.metadata_archive)}


@dataclass(frozen=True)
class PackagesImage:
    """The layer of a service's own Debian packages, on the top of its release layers."""

    parent: str  # image ID
    origins: Mapping[str, str]  # package -> where it is asked for
    ref: str  # its content-addressed tag


def plan_service(project: Project, release: str, service: PreparedTree, libraries: dict[str, PreparedTree],
                 lock: ServiceLock, layers: ReleaseLayers, bases: BaseImages, constraints: ConstraintsRecord,
                 target: Target, tree_layers: dict[str, TreeLayer], packages: ServicePackages) -> ServicePlan:
    """The plan of one service image; ``tree_layers`` holds the layer of the service and of each library it needs."""
    settings, layout = project.settings, project.layout
    rel = project.release(release)
    name = service.component
    runtime = rel.runtime.of(name)
    libs = [libraries[n] for n in lock.libraries]
    chain = layers.chain(name)
    base = chain[-1]
    shared = {f.sha256 for level in chain for f in level.files}
    extras = [f for f in lock.files if f.sha256 not in shared]
    wheels = wheel_set(project, extras, target)
    slots = [LibrarySlot(lib.component, lib.source.version) for lib in libs]
    patches = [asdict(p) for tree in [*libs, service] for p in tree.patches]
    labels = {**_labels(project, release, service, libs, base.image, constraints, patches), **runtime_labels(runtime)}
    # The service's own Debian packages: a layer on the release layers (those levels hold what it shares).
    own_packages = {p: origin for p, origin in packages.origins.items() if p not in layers.packages(name)}
    packages_image = PackagesImage(base.image_id, MappingProxyType(own_packages),
                                   packages_ref(project, rel, base.image_id, list(own_packages), name)) if own_packages else None
    trees = {"service": tree_layers[name], **{lib.component: tree_layers[lib.component] for lib in libs}}
    template = find_dockerfile(project, release, [name, "service"])
    dockerfile = render(template.read_text(), slots, {"dependencies": bool(extras)}) + label_instruction(labels)
    runtime_tar = runtime_archive(runtime, target.python)
    dependencies = requirements_text(extras)
    prefix = settings.image_prefix

    contexts = [NamedContext("wheels", "CTX_WHEELS", "wheels", wheels.digest, files=wheels.files)]
    buildargs = {
        "BUILD_BASE": bases.build_id, "RELEASE_BUILD": base.build_image_id,
        "RELEASE_BASE": packages_image.ref if packages_image else base.image_id,
        **{ctx.arg: context_ref(settings, ctx.image, ctx.digest) for ctx in contexts},
    }
    digest = input_hash({"dockerfile": dockerfile, "dependencies": dependencies, "buildargs": buildargs,
                         "trees": {tree: [layer.sha256, layer.metadata_sha256] for tree, layer in trees.items()},
                         "runtime": sha256_bytes(runtime_tar),
                         "labels": labels, "record_format": record_format})
    image_name = f"{prefix}/{name}"
    tags = (f"{image_name}:{service.source.version}-p{len(patches)}-{digest[:12]}", f"{image_name}:{release}")
    image_layers = [
        *[entry for level in chain for entry in (
            *([{"name": f"{level.name}: Debian packages", "image": level.packages_image, "debian": list(level.packages)}]
              if level.packages else []),
            *([{"name": level.name, "image": level.image, "packages": [f.pin for f in level.files]}]
              if level.files or not level.packages else []))],
        *([{"name": "Debian packages", "image": packages_image.ref, "debian": sorted(own_packages)}] if packages_image else []),
        {"name": "runtime files", "packages": []},
        *([{"name": "dependencies", "packages": [f.pin for f in sorted(extras, key=lambda f: f.name)]}] if extras else []),
        *[{"name": f"library {lib.component}", "packages": [f"{lib.component}=={lib.source.version}"]} for lib in libs],
        {"name": "service", "packages": [f"{name}=={service.source.version}"]},
    ]
    record = ImageRecord.from_json({
        "tool": tool_id(), "service": name, "release": release, "image": image_name,
        "tags": list(tags), "labels": labels, "input_hash": digest, "version": service.source.version,
        "head": service.head, "head_date": service.head_date, "tree": service.tree,
        "sources": {tree.component: asdict(tree.source) for tree in [service, *libs]},
        "heads": {tree.component: tree.head for tree in [service, *libs]},
        "wheels": {tree.component: tree_layers[tree.component].wheel.to_dict() for tree in [service, *libs]},
        "tree_layers": {tree.component: tree_layers[tree.component].to_dict() for tree in [service, *libs]},
        "dist_names": {tree.component: canonicalize_name(settings.pypi_name(tree.component)) for tree in [service, *libs]},
        "patches": patches,
        "libraries": {lib.component: {"version": lib.source.version, "head": lib.head, "patches": len(lib.patches)}
                      for lib in libs},
        "layers": image_layers,
        "bases": {**asdict(bases), "release_layer": base.image, "release_layer_id": base.image_id},
        "constraints": constraints.to_dict(), "target": asdict(target),
        "runtime": runtime_record(runtime, packages, lock),
        "build_log": layout.rel(layout.build_log(release, name)),
    })
    return ServicePlan(name, release, dockerfile, dependencies, buildargs, labels, digest, tags, contexts, trees,
                       record, runtime_tar, packages_image)


def runtime_labels(runtime: ServiceRuntime) -> dict[str, str]:
    """Each process's command (JSON) as a label, for deployment tools: io.openstack-patches.process.<name>."""
    labels = {f"{LABEL_NS}.process.{p.name}": p.label() for p in runtime.processes}
    if runtime.processes:
        labels[f"{LABEL_NS}.processes"] = ",".join(p.name for p in runtime.processes)
    if any(p.wsgi for p in runtime.processes):
        labels[f"{LABEL_NS}.api_deployment"] = runtime.api_deployment
    return labels


def runtime_record(runtime: ServiceRuntime, packages: ServicePackages, lock: ServiceLock) -> dict[str, Any]:
    """What the image carries to run, as the record (and the SBOM) say it: the Python distributions runtime.yaml
    added with the versions the lock chose, the Debian packages and where each was asked for, the processes."""
    versions = {f.name: f.version for f in lock.files}
    python = {}
    for item in runtime.python:
        requirement = Requirement(item.value)
        python[canonicalize_name(requirement.name)] = {"version": versions.get(canonicalize_name(requirement.name), ""),
                                                       "declared": item.where}
    return {"api_deployment": runtime.api_deployment, "python": python, "debian": dict(sorted(packages.origins.items())),
            "debian_excluded": list(packages.excluded),
            "processes": {p.name: json.loads(p.label()) for p in runtime.processes}}


def label_instruction(labels: dict[str, str]) -> str:
    """One LABEL instruction for all labels: the engine's ``labels`` parameter adds one step (and one
    container) per label."""
    pairs = " ".join(f"{json.dumps(k)}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items()))
    return f"LABEL {pairs}\n"


def context_ref(settings, name: str, digest: str) -> str:
    return f"{settings.image_prefix}/context-{name}:{digest[:24]}"
