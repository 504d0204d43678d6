"""The BuildKit hand-off: ``<workdir>/<release>/docker-bake.json`` for ``docker buildx bake``.

One target per service, from the very plan the docker-py path builds
(``plan.plan_service``): the same rendered Dockerfile (with its
``dependencies.txt`` and the patched trees' layer archives) in a context
directory, the same build arguments, labels and tags, and every named
context (a set of package files) as a real directory, the files linked into
it from the cache.  A named context replaces the Dockerfile stage of the same name
(BuildKit's ``contexts``, buildah's ``--build-context``): the stage that
docker-py feeds from a context image, so the ``CTX_*`` arguments stay as
they are and are never resolved.

Base images: docker-py passes image IDs, which no other builder can
resolve, so the file names the same images by their content-addressed tags:
in the layer cache registry when one is set (they were pushed there, and a
remote builder pulls them from it), else the local tags, which the
``docker`` driver of buildx on this engine sees.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipeline.core import console, locks
from pipeline.core.files import replace_dir, write_json
from pipeline.core.releases import Project
from pipeline.image import layer_cache
from pipeline.image.engine import connect
from pipeline.image.plan import ServicePlan
from pipeline.image.prepare import prepare_release
from pipeline.image.tree_layer import read_verified
from pipeline.image.wheels import fetch_files

BASE_ARGS = ("BUILD_BASE", "RELEASE_BUILD", "RELEASE_BASE")


def _link(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)  # the cache's file itself: no copy of hundreds of megabytes
    except OSError:  # another file system
        shutil.copyfile(source, dest)


def _target(project: Project, plan: ServicePlan, bases: dict[str, str]) -> dict:
    """One bake target: the plan's Dockerfile and arguments, its named contexts as directories."""
    directory = project.layout.bake_dir(plan.release, plan.service)
    paths = {ctx.stage: fetch_files(project, list(ctx.files)) for ctx in plan.contexts}
    for layer in plan.trees.values():
        read_verified(layer)  # each archive as it was written (made again if damaged) before it is linked

    def fill(staging: Path) -> None:
        (staging / "context").mkdir(parents=True)
        (staging / "context" / "Dockerfile").write_text(plan.dockerfile)
        (staging / "context" / "dependencies.txt").write_text(plan.dependencies)
        (staging / "context" / "runtime.tar").write_bytes(plan.runtime)
        for name, archive in plan.tree_files().items():
            (staging / "context" / name).parent.mkdir(parents=True, exist_ok=True)
            _link(archive, staging / "context" / name)
        for ctx in plan.contexts:
            (staging / ctx.stage).mkdir()
            for path in paths[ctx.stage].values():
                _link(path, staging / ctx.stage / path.name)

    replace_dir(directory, fill)
    return {
        "context": str(directory / "context"),
        "dockerfile": "Dockerfile",
        "contexts": {ctx.stage: str(directory / ctx.stage) for ctx in plan.contexts},
        "args": {**plan.buildargs, **bases},
        "labels": plan.labels,
        "tags": list(plan.tags),
    }


def write(project: Project, release: str, services: list[str], jobs: int = 1) -> tuple[Path, dict]:
    """Prepare the release (sources, bases, release layer) on the engine and write the bake file."""
    rel = project.services(release, services)
    client = connect(project.settings)
    inputs = prepare_release(project, rel, services, client, jobs, contexts=False)
    cache = project.settings.cache_registry if layer_cache.enabled(project.settings) else ""

    def bases(service: str) -> dict[str, str]:
        level = inputs.layers.chain(service)[-1]  # the deepest release level of the service's group
        own = inputs.plans[service].packages_image  # with the service's own Debian packages on it, if any
        refs = (inputs.bases.build, level.build_image, own.ref if own else level.image)
        return {arg: f"{cache}/{ref}" if cache else ref for arg, ref in zip(BASE_ARGS, refs, strict=True)}

    layout = project.layout
    with locks.hold(layout.lock(release), f"the work directory of {release}"):
        targets = {service: _target(project, inputs.plans[service], bases(service)) for service in services}
    data = {"group": {"default": {"targets": list(services)}}, "target": targets}
    write_json(layout.bake_file(release), data)
    return layout.bake_file(release), data


def as_report(project: Project, path: Path, data: dict) -> console.Report:
    """What ``invoke bake`` prints: the bake file as JSON; a row per target, then where the file is."""
    rows = [{"target": name, "tag": t["tags"][0], "contexts": ", ".join(t["contexts"])} for name, t in data["target"].items()]
    table = console.Table([console.Column("target"), console.Column("tag"), console.Column("named contexts", "contexts")],
                          rows, footer=f"bake file: {project.layout.rel(path)} (docker buildx bake -f {path})")
    return console.Report(data, [table])
