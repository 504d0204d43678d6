"""Service images: the rendered Dockerfile, its inputs and the build record ``image.json``.

Owns one service image of a release: its layers on the release layers (its
own extra dependencies, then each patched library and the patched service,
each as one archive of its installed files and their byte code), the build
context (the Dockerfile, the service's extra requirements, the patched
trees' layer archives) and the context image of the package files its
dependency layer installs, tags
(``<prefix>/<service>:<version>-p<patches>-<input hash>``, immutable,
and ``:<release>``, moving), labels, and the record ``image.json``: written
once, after a successful build, with everything later stages need (the
source record of every component, every patch with the hash of its bytes
and its provenance, the constraint changes, the layers), so no later stage
re-reads patch files, sources or settings.

Before the record is written, the image itself must prove that it holds
each patched tree's layer archive: one of its layers' diff IDs (the sha256
the engine recorded of the layer) is the archive's sha256.  An image that
fails this, pulled from the layer cache or made with the engine's build
cache, is not tagged: it is built again without that cache, and a second
failure is an error.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import console
from pipeline.core.errors import ImageBuildError, LayerCacheError
from pipeline.core.files import (
    read_json,
    remove,
    write_atomic,
    write_json,
)
from pipeline.core.releases import Project
from pipeline.core.stamps import tool_id
from pipeline.image import layer_cache
from pipeline.image import record as image_record
from pipeline.image.engine import (
    context_image,
    context_tar,
    engine_key,
    inspect,
    inspect_present,
    stream_build,
    tag,
)
from pipeline.image.packages import ensure_packages_image
from pipeline.image.plan import ServicePlan
from pipeline.image.record import ImageRecord
from pipeline.image.tree_layer import TreeLayer, read_verified


@dataclass
class ImageResult:
    service: str
    release: str
    action: str  # built | from the layer cache | up to date
    record: ImageRecord
    build_calls: int = 0
    seconds: float = 0.0
    record_path: Path = field(default_factory=Path)


def downstream_outputs(project: Project, release: str, service: str) -> list[Path]:
    """What later stages derived from a service's image: removed whenever the image changes or fails."""
    layout = project.layout
    return [layout.sbom_file(release, service), layout.sbom_record(release, service), layout.vex_file(release, service),
            layout.vex_record(release, service), layout.push_record(release, service)]


def is_current(client, project: Project, plan: ServicePlan) -> ImageRecord | None:
    """The existing record if the image for exactly this plan exists."""
    previous = image_record.read(project.layout.image_record(plan.release, plan.service))
    if previous is not None and previous.input_hash == plan.input_hash and inspect(client, previous.image_id) is not None:
        return previous
    return None


def ensure_packages(client, project: Project, plan: ServicePlan) -> None:
    """The image of the service's own Debian packages, which its build starts from (when it has any)."""
    if plan.packages_image is not None:
        image = plan.packages_image
        ensure_packages_image(client, project, project.release(plan.release), image.parent, image.origins, plan.service,
                              project.layout.service_dir(plan.release, plan.service) / "packages.log")


def ensure_contexts(client, project: Project, plan: ServicePlan) -> int:
    """Make the plan's context images (under the release lock: they are read from the trees); return builds made."""
    out_dir = project.layout.service_dir(plan.release, plan.service)
    built = 0
    for ctx in plan.contexts:
        _, made = context_image(client, project.settings, ctx.image, ctx.digest, functools.partial(ctx.make, project),
                                out_dir / f"context-{ctx.image}.log")
        built += made
    return built


def build_service(client, project: Project, plan: ServicePlan, force: bool = False) -> ImageResult:
    """Build (or reuse) one service image and write its record; the caller holds the service's lock."""
    started = time.monotonic()
    layout = project.layout
    release, name = plan.release, plan.service
    record_path = layout.image_record(release, name)
    immutable, moving = plan.tags
    previous = None if force else is_current(client, project, plan)
    if previous is not None:
        for ref in plan.tags:  # the moving tag follows the image; an immutable one removed by hand comes back
            found = (inspect(client, ref) or {}).get("Id")
            if found != previous.image_id and (ref == moving or found is None):
                tag(client, previous.image_id, ref)
        layer_cache.store_service(client, project.settings, plan.tags, inspect_present(client, previous.image_id))
        return ImageResult(name, release, "up to date", previous, 0, time.monotonic() - started, record_path)

    # From here on an older record (and everything derived from it) would lie.
    for path in [record_path, *downstream_outputs(project, release, name)]:
        remove(path)
    out_dir = layout.service_dir(release, name)
    write_json(out_dir / "build-inputs.json", {"buildargs": plan.buildargs, "labels": plan.labels, "tool": tool_id()})
    write_atomic(out_dir / "Dockerfile", plan.dockerfile)
    # The immutable tag names every input: the cache's image under it is this build's result.
    image_id = None if force else layer_cache.fetch(client, project.settings, immutable, f"image {name} ({release})")
    if image_id is not None and not plan.labels.items() <= inspect_present(client, image_id)["Config"]["Labels"].items():
        raise LayerCacheError(f"layer cache: {immutable} does not carry the labels of this build",
                              hint="the cache holds an image that was not made by this tool: remove that tag from it")
    action, calls = "from the layer cache", 0
    diff_ids = _tree_diff_ids(client, plan, image_id) if image_id is not None else None
    refused = image_id is not None and diff_ids is None
    if refused:
        console.note(f"layer cache: {immutable} does not hold the layer archives of this build's patched trees; "
                     "building it here (and replacing it in the cache)")

    def build_here(nocache: bool) -> str:
        context = context_tar({"Dockerfile": plan.dockerfile.encode(), "dependencies.txt": plan.dependencies.encode(),
                               "runtime.tar": plan.runtime, **{f"trees/{tree}/{archive}": data for tree, layer in plan.trees.items()
                                  for archive, data in read_verified(layer).items()}})
        with console.step(f"image {name} ({release})"):
            return stream_build(client, context, layout.build_log(release, name), f"{name} ({release})",
                                buildargs=plan.buildargs, nocache=nocache)

    if diff_ids is None:
        image_id, action, calls = build_here(force), "built", 1
        diff_ids = _tree_diff_ids(client, plan, image_id)
    if diff_ids is None and not force:
        console.note(f"{name} ({release}): the layers the engine's build cache gave do not hold the patched trees' "
                     "archives; building again without it")
        image_id, calls = build_here(True), 2
        diff_ids = _tree_diff_ids(client, plan, image_id)
    assert image_id is not None  # from the cache with its trees' layers, or built here
    if diff_ids is None:
        raise ImageBuildError(f"{name} ({release}): the engine's image {image_id[7:19]} does not hold the layer archives "
                              "of the patched trees it was built from (no layer has their sha256 as its diff ID)",
                              hint=f"check the engine (`docker info`, its storage); build log: "
                                   f"{layout.build_log(release, name)}")
    tag(client, image_id, immutable)
    tag(client, image_id, moving)
    layer_cache.store_service(client, project.settings, plan.tags, inspect_present(client, image_id), replace=refused)
    record = plan.record.built(image_id, diff_ids)
    record.write(record_path)
    return ImageResult(name, release, action, record, calls, time.monotonic() - started, record_path)


def _tree_diff_ids(client, plan: ServicePlan, image_id: str) -> dict[str, str] | None:
    """Each patched tree's layer in the image (component -> diff ID), or None if the image lacks one.

    The archives are written as the engine writes layers, so the layer ``ADD``
    makes of one has the archive's sha256 as its diff ID.  An engine that
    writes layers otherwise gives other diff IDs: for it, the diff ID of each
    archive is learnt once from a build of that archive alone on an empty
    image, without the engine's cache, and kept beside the archive."""
    present = set(inspect_present(client, image_id)["RootFS"]["Layers"])
    found = {}
    for layer in plan.trees.values():
        diff_id = f"sha256:{layer.sha256}"
        if diff_id not in present:
            diff_id = _engine_diff_id(client, layer)
        if diff_id not in present:
            return None
        found[layer.component] = diff_id
    return found


def _engine_diff_id(client, layer: TreeLayer) -> str:
    """The diff ID this engine gives the layer ``ADD`` makes of ``layer``'s archive."""
    known = layer.directory / "diff-ids.json"
    ids = read_json(known)
    ids = ids if isinstance(ids, dict) else {}
    key = engine_key(client)
    if not isinstance(ids.get(key), str):
        context = context_tar({"Dockerfile": b"FROM scratch\nADD layer.tar /\n",
                               "layer.tar": read_verified(layer)["layer.tar"]})
        image_id = stream_build(client, context, layer.directory / f"diff-id-{key}.log",
                                f"the layer of {layer.component} alone", nocache=True)
        ids[key] = inspect_present(client, image_id)["RootFS"]["Layers"][-1]
        client.remove_image(image_id)
        write_json(known, ids)
    return ids[key]
