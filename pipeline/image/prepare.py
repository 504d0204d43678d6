"""What every service image of a release shares, prepared under the release's lock, and each service's plan.

``prepare_release`` prepares what every service image of the release shares,
under the release's lock: fetch and patch every component (the release layers
depend on every service's dependencies), effective constraints, base
images, the dependency lock of every service, the release layers, the wheel
of every patched tree the services install (read from the trees while no
other run can change them), each service's plan and the images a service build
starts from (its Debian packages, its context images).  ``pipeline.build``
runs it as the first step of the build DAG.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pipeline.constraints import effective as constraints_stage
from pipeline.constraints.effective import ConstraintsRecord
from pipeline.core import console, locks
from pipeline.core.errors import PipelineError
from pipeline.core.files import remove
from pipeline.core.releases import Project, Release
from pipeline.image.bases import BaseImages, ensure_bases
from pipeline.image.bytecode import ByteCode, package_modules
from pipeline.image.dependencies import release_locks
from pipeline.image.engine import engine_info
from pipeline.image.packages import service_packages
from pipeline.image.plan import ServicePlan, plan_service
from pipeline.image.release_layer import ReleaseLayers, ensure_release_layers
from pipeline.image.service_image import downstream_outputs, ensure_contexts, ensure_packages, is_current
from pipeline.image.tree_layer import EPOCH, TreeLayer, site_packages, tree_layer
from pipeline.image.tree_wheel import TreeWheel, tree_wheel
from pipeline.image.wheels import Target, wheel_set
from pipeline.patches import series
from pipeline.patches.records import PreparedTree


@dataclass
class ReleaseInputs:
    rel: Release
    prepared: dict[str, PreparedTree]
    constraints: ConstraintsRecord
    bases: BaseImages
    layers: ReleaseLayers
    plans: dict[str, ServicePlan]
    target: Target


def target_of(client, rel: Release) -> Target:
    return Target.of(rel.python, engine_info(client)["arch"], rel.base.debian_suite)


def wheel_of(project: Project, tree: PreparedTree, target: Target, beside: Callable[[], None] | None = None) -> TreeWheel:
    """The wheel an image installs for a patched tree, built from the tree's own build requirements."""
    build_files = wheel_set(project, [], target, trees=[project.layout.resolve(tree.tree)]).files
    return tree_wheel(project, tree, build_files, beside)


def layer_of(project: Project, tree: PreparedTree, target: Target, client, bases: BaseImages) -> TreeLayer:
    """The layer an image adds for a patched tree: its wheel, installed for the image's Python, with the
    byte code the runtime base's interpreter makes."""
    bytecode = ByteCode(client, bases.runtime_id, target.python, project.layout.bytecode(), EPOCH)

    def compile_early() -> None:
        # While the wheel builds, the tree's packages are compiled as the wheel will most likely install
        # them; the layer compiles whatever the guess missed, and reports a failure itself.
        with contextlib.suppress(PipelineError, OSError):
            bytecode.compiled(package_modules(project.layout.resolve(tree.tree), site_packages(target.python)))

    return tree_layer(project, wheel_of(project, tree, target, compile_early), target.python, tree.release, bytecode)


def prepare_release(project: Project, rel: Release, services: list[str], client, jobs: int = 1,
                    force: bool = False, contexts: bool = True) -> ReleaseInputs:
    """Everything the release's images share, and each requested service's plan (and context images)."""
    layout = project.layout
    target = target_of(client, rel)
    with locks.hold(layout.lock(rel.name), f"the work directory of {rel.name}"):
        # Fetching and patching wait on git and the network, not the CPU: always a few at once.
        prepared = {p.component: p for p in series.patch(project, rel.name, (), max(jobs, 4))}
        constraints = constraints_stage.build(project, rel.name)
        constraints_text = layout.effective_constraints(rel.name).read_text()
        bases = ensure_bases(client, project, rel, target)
        libraries = {name: prepared[name] for name in rel.libraries}

        with console.step(f"dependencies of {len(rel.services)} services ({rel.name})"):
            service_locks = release_locks(project, rel.name, [prepared[s] for s in rel.services], libraries,
                                          constraints_text, target, max(2, jobs))
        users = {s: (s, *service_locks[s].libraries) for s in services}
        packages = {s: service_packages(project, rel, prepared[s]) for s in rel.services}

        def layer(name: str) -> TreeLayer:
            try:
                return layer_of(project, prepared[name], target, client, bases)
            except PipelineError:  # the images that install this tree cannot be built: their records would lie
                for service in (s for s, trees in users.items() if name in trees):
                    for path in [layout.image_record(rel.name, service), *downstream_outputs(project, rel.name, service)]:
                        remove(path)
                raise

        trees = list(dict.fromkeys(n for names in users.values() for n in names))
        with ThreadPoolExecutor(max_workers=max(2, jobs)) as pool:
            # The trees' layers are made on the host while the engine builds the release layers (they need nothing of them).
            building = [pool.submit(layer, name) for name in trees]
            layers = ensure_release_layers(client, project, rel, bases, list(service_locks.values()), services,
                                           target, packages, force)
            tree_layers = {name: future.result() for name, future in zip(trees, building, strict=True)}
        plans = {}
        for service in services:
            plans[service] = plan_service(project, rel.name, prepared[service], libraries, service_locks[service],
                                          layers, bases, constraints, target, tree_layers, packages[service])
            if not contexts:  # a bake file names the image the service starts from: it must exist
                ensure_packages(client, project, plans[service])
            elif force or is_current(client, project, plans[service]) is None:
                ensure_packages(client, project, plans[service])
                ensure_contexts(client, project, plans[service])
    return ReleaseInputs(rel, prepared, constraints, bases, layers, plans, target)
