"""What every service image of a release shares, prepared under the release's lock, and each service's plan.

``release_steps`` are the build DAG's early part, under the release's lock:
fetch and patch of every component (the release layers depend on every
service's dependencies), effective constraints, base images, the dependency
lock of every service, the release layers, the layer of every patched tree
the services install (read from the trees while no other run can change
them), and each service's plan with the images its build starts from (its
Debian packages, its context images).  ``pipeline.build`` adds each service's
image after its plan; ``prepare_release`` runs them alone (``invoke bake``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.constraints import effective as constraints_stage
from pipeline.constraints.effective import ConstraintsRecord
from pipeline.core import console, locks, runner
from pipeline.core.errors import PipelineError
from pipeline.core.files import clean_staging, remove
from pipeline.core.releases import Component, Project, Release
from pipeline.image.bases import BaseImages, ensure_bases
from pipeline.image.bytecode import ByteCode, package_modules
from pipeline.image.dependencies import ServiceLock, release_locks
from pipeline.image.engine import engine_info
from pipeline.image.packages import ServicePackages, service_packages
from pipeline.image.plan import ServicePlan, plan_service
from pipeline.image.release_layer import ReleaseLayers, ensure_release_layers
from pipeline.image.service_image import downstream_outputs, ensure_contexts, ensure_packages, is_current
from pipeline.image.tree_layer import EPOCH, TreeLayer, site_packages, tree_layer
from pipeline.image.tree_wheel import TreeWheel, tree_wheel
from pipeline.image.wheels import Target, wheel_set
from pipeline.patches import series
from pipeline.patches.records import PreparedTree
from pipeline.sources.fetch import SourceRecord, fetch_one, write_sources


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


@dataclass(frozen=True)
class Dependencies:
    prepared: dict[str, PreparedTree]
    libraries: dict[str, PreparedTree]
    locks: dict[str, ServiceLock]
    packages: dict[str, ServicePackages]
    trees: frozenset[str]  # every patched tree a requested service installs
    target: Target


def release_steps(project: Project, rel: Release, services: list[str], client, held: contextlib.ExitStack,
                  jobs: int = 1, force: bool = False, contexts: bool = True,
                  on_stale: Callable[[], object] | None = None) -> list[runner.Step]:
    """The build DAG's early part, up to ``plan:<service>``: each service's plan (and its context images).

    ``workdir-lock`` takes the release's lock into ``held`` (the caller's
    ``with``), ``workdir-unlock`` drops it once the trees are read; every step
    between runs under it (after a failure there, ``--keep-going`` goes on with
    the lock kept until the run ends).  ``on_stale`` is called when a service's
    image is to be built.
    """
    layout = project.layout
    target = target_of(client, rel)
    components = project.components(rel.name)
    names = [c.name for c in components]
    patched = tuple(f"patch:{n}" for n in names)

    def take(_: dict) -> None:
        held.enter_context(locks.hold(layout.lock(rel.name), f"the work directory of {rel.name}"))
        clean_staging(layout.workdir / "src" / rel.name)
        clean_staging(layout.workdir / "patched" / rel.name)

    def dependencies(results: dict) -> Dependencies:
        prepared = {n: results[f"patch:{n}"] for n in names}
        constraints_text = layout.effective_constraints(rel.name).read_text()
        libraries = {name: prepared[name] for name in rel.libraries}
        with console.step(f"dependencies of {len(rel.services)} services ({rel.name})"):
            service_locks = release_locks(project, rel.name, [prepared[s] for s in rel.services], libraries,
                                          constraints_text, target, max(2, jobs))
        packages = {s: service_packages(project, rel, prepared[s]) for s in rel.services}
        trees = frozenset(n for s in services for n in (s, *service_locks[s].libraries))
        return Dependencies(prepared, libraries, service_locks, packages, trees, target)

    def release_layers(results: dict) -> ReleaseLayers:
        deps: Dependencies = results["dependencies"]
        return ensure_release_layers(client, project, rel, results["bases"], list(deps.locks.values()), services,
                                     target, deps.packages, force)

    def tree(name: str) -> Callable[[dict], TreeLayer | None]:
        def run(results: dict) -> TreeLayer | None:
            deps: Dependencies = results["dependencies"]
            if name not in deps.trees:
                return None
            try:
                return layer_of(project, deps.prepared[name], target, client, results["bases"])
            except PipelineError:  # the images that install this tree cannot be built: their records would lie
                for service in (s for s in services if name in (s, *deps.locks[s].libraries)):
                    for path in [layout.image_record(rel.name, service), *downstream_outputs(project, rel.name, service)]:
                        remove(path)
                raise
        return run

    def plan(service: str) -> Callable[[dict[str, Any]], ServicePlan]:
        def run(results: dict[str, Any]) -> ServicePlan:
            deps: Dependencies = results["dependencies"]
            tree_layers = {n: results[f"tree:{n}"] for n in (service, *deps.locks[service].libraries)}
            planned = plan_service(project, rel.name, deps.prepared[service], deps.libraries, deps.locks[service],
                                   results["release-layers"], results["bases"], results["constraints"], target,
                                   tree_layers, deps.packages[service])
            if not contexts:  # a bake file names the image the service starts from: it must exist
                ensure_packages(client, project, planned)
            elif force or is_current(client, project, planned) is None:
                if on_stale is not None:
                    on_stale()
                ensure_packages(client, project, planned)
                ensure_contexts(client, project, planned)
            return planned
        return run

    trees = list(dict.fromkeys([*services, *rel.libraries]))
    early = ("workdir-lock",)
    steps = [runner.Step("workdir-lock", take, inline=True)]
    # Fetching and patching wait on git and the network, not the CPU: always a few at once.
    steps += [runner.Step(f"fetch:{c.name}", functools.partial(_fetch, project, c), early, io=True) for c in components]
    steps.append(runner.Step("sources", lambda r: write_sources(project, rel.name, {n: r[f"fetch:{n}"] for n in names}),
                             tuple(f"fetch:{n}" for n in names)))
    steps += [runner.Step(f"patch:{c.name}", functools.partial(_patch, project, c), (f"fetch:{c.name}",), io=True)
              for c in components]
    steps += [runner.Step("constraints", lambda _: constraints_stage.build(project, rel.name), early),
              # The engine builds the bases and release layers; the host makes the trees' layers meanwhile.
              runner.Step("bases", lambda _: ensure_bases(client, project, rel, target), early, io=True),
              runner.Step("dependencies", dependencies, ("sources", "constraints", *patched)),
              runner.Step("release-layers", release_layers, ("dependencies", "bases"), io=True)]
    steps += [runner.Step(f"tree:{n}", tree(n), ("dependencies", "bases")) for n in trees]
    # Which libraries a service installs is known once its lock is resolved: a plan waits for every library's tree.
    libraries = tuple(f"tree:{n}" for n in rel.libraries)
    steps += [runner.Step(f"plan:{s}", plan(s), ("release-layers", f"tree:{s}", *libraries)) for s in services]
    steps.append(runner.Step("workdir-unlock", lambda _: held.close(),
                             ("release-layers", *(f"tree:{n}" for n in trees), *(f"plan:{s}" for s in services)),
                             inline=True))
    return steps


_interrupted: list[contextlib.ExitStack] = []


@contextlib.contextmanager
def workdir_held() -> Iterator[contextlib.ExitStack]:
    """The stack ``workdir-lock`` takes the release's lock into, closed when the DAG is done.

    After an interrupt the steps still running may still write the trees, so
    the lock is kept (the kernel drops it with the process), as it was when
    one step held it.
    """
    held = contextlib.ExitStack()
    try:
        yield held
    except BaseException:
        _interrupted.append(held)
        raise
    held.close()


def inputs_of(rel: Release, services: list[str], results: dict) -> ReleaseInputs:
    deps: Dependencies = results["dependencies"]
    return ReleaseInputs(rel, deps.prepared, results["constraints"], results["bases"], results["release-layers"],
                         {s: results[f"plan:{s}"] for s in services}, deps.target)


def prepare_release(project: Project, rel: Release, services: list[str], client, jobs: int = 1,
                    force: bool = False, contexts: bool = True) -> ReleaseInputs:
    """Everything the release's images share, and each requested service's plan (and context images)."""
    with workdir_held() as held:
        outcome = runner.run(release_steps(project, rel, services, client, held, jobs, force, contexts), jobs)
    if not outcome.ok:
        raise next(iter(outcome.failures.values()))
    return inputs_of(rel, services, outcome.results)


def _fetch(project: Project, component: Component, _: dict[str, Any]) -> SourceRecord:
    return fetch_one(project, component)


def _patch(project: Project, component: Component, results: dict[str, Any]) -> PreparedTree:
    return series.patch_one(project, component, results[f"fetch:{component.name}"])
