"""The build DAG: sources -> (image -> sbom -> vex -> push) per service, on ``dag.run``.

The first step prepares what every service image of the release shares,
under the release's lock: fetch and patch every component (the release layers
depend on every service's dependencies), effective constraints, base
images, the dependency lock of every service, the release layers, the wheel
of every patched tree the services install (read from the trees while no
other run can change them), and the context images of the services to build.  Each service then
builds under its own lock, so two runs on one engine and work directory
never step on each other.  A rerun with nothing changed makes no build call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from . import console, dag, locks, series
from . import constraints as constraints_stage
from .bases import BaseImages, ensure_bases
from .bytecode import ByteCode, package_modules
from .config import Project, Release, registry_reference
from .constraints import ConstraintsRecord
from .dependencies import release_locks
from .engine import connect, engine_info
from .errors import ConfigError, PipelineError, UsageError
from .files import remove
from .packages import service_packages
from .release_layer import ReleaseLayers, ensure_release_layers
from .series import PreparedTree
from .service_image import (
    ImageResult,
    ServicePlan,
    build_service,
    downstream_outputs,
    ensure_contexts,
    ensure_packages,
    is_current,
    plan_service,
)
from .tree_layer import EPOCH, TreeLayer, site_packages, tree_layer
from .tree_wheel import TreeWheel, tree_wheel
from .wheels import Target, wheel_set


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
            tree_layers = {name: future.result() for name, future in zip(trees, building)}
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


@dataclass
class BuildReport:
    release: str
    services: list[str]
    outcome: dag.Outcome

    def image(self, service: str) -> ImageResult | None:
        return self.outcome.results.get(f"image:{service}")

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for service in self.services:
            result = self.image(service)
            status = self.outcome.status(f"image:{service}")
            later = [f"{s} failed" for s in ("sbom", "vex", "push") if f"{s}:{service}" in self.outcome.failures]
            rows.append({
                "release": self.release, "service": service,
                "result": result.action if result else status,
                "image": result.record["tags"][0] if result else None,
                "image_id": result.record["image_id"] if result else None,
                "patches": len(result.record["patches"]) if result else None,
                "seconds": round(self.outcome.seconds.get(f"image:{service}", 0.0), 2),
                "failed": later[0] if later else None,
            })
        return rows

    def first_error(self) -> BaseException | None:
        return next(iter(self.outcome.failures.values()), None)


def with_cache(project: Project, cache_from: str | None) -> Project:
    """The project with ``--cache-from REGISTRY`` applied (the flag wins over ``cache_registry``)."""
    if not cache_from:
        return project
    registry = registry_reference(cache_from, "--cache-from", UsageError)
    return replace(project, settings=replace(project.settings, cache_registry=registry))


def build(project: Project, release: str, services: list[str], jobs: int = 1, force: bool = False,
          push: bool = False, keep_going: bool = False, cache_from: str | None = None) -> BuildReport:
    from . import push as push_stage
    from . import sbom, vex

    project = with_cache(project, cache_from)
    rel = project.services(release, services)
    if push and not project.settings.registry:
        raise ConfigError("--push needs a registry", hint="set pipeline.registry in invoke.yaml, or INVOKE_PIPELINE_REGISTRY=host:port")
    client = connect(project.settings)  # fail fast, before any fetching, when there is no engine (says which one)
    layout = project.layout

    def sources_step(_: dict) -> ReleaseInputs:
        inputs = prepare_release(project, rel, services, client, jobs, force)
        if any(force or is_current(client, project, plan) is None for plan in inputs.plans.values()):
            sbom.preload()  # images will be built: their SBOMs will need the validator
        return inputs

    def image_step(service: str):
        def run(results: dict) -> ImageResult:
            inputs: ReleaseInputs = results["sources"]
            with locks.hold(layout.lock(f"{release}-{service}"), f"the image of {service} ({release})"):
                return build_service(client, project, inputs.plans[service], force)
        return run

    def sbom_step(service: str):
        def run(results: dict):
            with locks.hold(layout.lock(f"{release}-{service}"), f"the image of {service} ({release})"):
                return sbom.generate(project, release, service, client)
        return run

    def vex_step(service: str):
        def run(results: dict):
            with locks.hold(layout.lock(f"{release}-{service}"), f"the image of {service} ({release})"):
                return vex.generate(project, release, service)
        return run

    def push_step(service: str):
        def run(results: dict):
            with locks.hold(layout.lock(f"{release}-{service}"), f"the image of {service} ({release})"):
                return push_stage.push(project, release, service, client)
        return run

    steps = [dag.Step("sources", sources_step)]
    for service in services:
        steps += [dag.Step(f"image:{service}", image_step(service), ("sources",)),
                  dag.Step(f"sbom:{service}", sbom_step(service), (f"image:{service}",)),
                  dag.Step(f"vex:{service}", vex_step(service), (f"sbom:{service}",))]
        if push:
            steps.append(dag.Step(f"push:{service}", push_step(service), (f"vex:{service}",)))
    return BuildReport(release, services, dag.run(steps, jobs, keep_going))
