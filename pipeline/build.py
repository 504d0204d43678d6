"""The build DAG: fetch, patch, constraints, locks, release layers, trees, plans (``image.prepare``), then
image -> sbom -> vex -> push per service, all steps of one ``runner.run``.

The early steps prepare what every service image of the release shares,
under the release's lock; each service's image starts once its plan is made,
and builds with its SBOM and VEX (and push) under its own lock, so two runs on
one engine and work directory never step on each other.  A rerun with nothing
changed makes no build call.

May import: core, sources, patches, constraints, image, provenance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pipeline.core import console, locks, runner
from pipeline.core.errors import ConfigError, UsageError
from pipeline.core.releases import Project
from pipeline.core.settings import registry_reference
from pipeline.image.engine import connect
from pipeline.image.prepare import release_steps, workdir_held
from pipeline.image.service_image import ImageResult, build_service


@dataclass
class BuildReport:
    release: str
    services: list[str]
    outcome: runner.Outcome

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
                "image": result.record.immutable_tag if result else None,
                "image_id": result.record.image_id if result else None,
                "patches": len(result.record.patches) if result else None,
                "seconds": round(self.outcome.seconds.get(f"image:{service}", 0.0), 2),
                "failed": later[0] if later else None,
            })
        return rows

    def as_report(self) -> console.Report:
        """What ``invoke build`` prints: a row per service (a later failed step after its result)."""
        return console.Report.of([
            console.Column("service"),
            console.Column("result", lambda r: r["result"] if not r["failed"] else f"{r['result']}, {r['failed']}"),
            console.Column("image", lambda r: r["image"] or "-"),
            console.Column("id", lambda r: (r["image_id"] or "")[7:19] or "-"),
            console.Column("patches", lambda r: r["patches"] if r["patches"] is not None else "-"),
            console.Column("time", lambda r: f"{r['seconds']:.1f}s"),
        ], self.rows())

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
    from pipeline.image import push as push_stage
    from pipeline.provenance import sbom, vex

    project = with_cache(project, cache_from)
    rel = project.services(release, services)
    if push and not project.settings.registry:
        raise ConfigError("--push needs a registry", hint="set pipeline.registry in invoke.yaml, or INVOKE_PIPELINE_REGISTRY=host:port")
    client = connect(project.settings)  # fail fast, before any fetching, when there is no engine (says which one)
    layout = project.layout

    preloaded = threading.Lock()

    def preload() -> None:  # images will be built: their SBOMs will need the validator (imported once)
        if preloaded.acquire(blocking=False):
            sbom.preload()

    def image_step(service: str) -> Callable[[dict[str, Any]], ImageResult]:
        def run(results: dict[str, Any]) -> ImageResult:
            with locks.hold(layout.lock(f"{release}-{service}"), f"the image of {service} ({release})"):
                return build_service(client, project, results[f"plan:{service}"], force)
        return run

    def sbom_step(service: str) -> Callable[[dict[str, Any]], object]:
        def run(results: dict[str, Any]) -> object:
            with locks.hold(layout.lock(f"{release}-{service}"), f"the image of {service} ({release})"):
                return sbom.generate(project, release, service, client)
        return run

    def vex_step(service: str) -> Callable[[dict[str, Any]], object]:
        def run(results: dict[str, Any]) -> object:
            with locks.hold(layout.lock(f"{release}-{service}"), f"the image of {service} ({release})"):
                return vex.generate(project, release, service)
        return run

    def push_step(service: str) -> Callable[[dict[str, Any]], object]:
        def run(results: dict[str, Any]) -> object:
            with locks.hold(layout.lock(f"{release}-{service}"), f"the image of {service} ({release})"):
                return push_stage.push(project, release, service, client)
        return run

    def service_steps(service: str) -> list[runner.Step]:
        steps = [runner.Step(f"image:{service}", image_step(service), (f"plan:{service}",)),
                 runner.Step(f"sbom:{service}", sbom_step(service), (f"image:{service}",)),
                 runner.Step(f"vex:{service}", vex_step(service), (f"sbom:{service}",))]
        if push:
            steps.append(runner.Step(f"push:{service}", push_step(service), (f"vex:{service}",)))
        return steps

    with workdir_held() as held:
        steps = release_steps(project, rel, services, client, held, jobs, force, on_stale=preload)
        for service in services:
            steps += service_steps(service)
        return BuildReport(release, services, runner.run(steps, jobs, keep_going))
