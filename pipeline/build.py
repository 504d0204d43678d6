"""The build DAG: fetch -> patch -> constraints -> image -> sbom (-> push) per service.

Wires the stages together for ``invoke build``; each stage decides from its
own stamps or records whether it has work to do, so a rerun with nothing
changed makes no build call at all.
"""

from __future__ import annotations

from pathlib import Path

from . import console, dag, images, sbom
from . import constraints as constraints_stage
from . import patches as patches_stage
from . import sources
from .config import Project
from .errors import ConfigError, UnknownComponentError
from .patches import PreparedTree
from .sources import SourceRecord, package_version


def source_input(prepared: PreparedTree, record: SourceRecord) -> images.SourceInput:
    tree = Path(prepared.tree)
    return images.SourceInput(
        component=prepared.component,
        version=package_version(record),
        tree=tree,
        head=prepared.head,
        origin=record.origin,
        upstream_revision=record.upstream_revision,
        patches=tuple({"file": p.file, "sha256": p.sha256, "subject": p.subject, "author": p.author, "commit": p.commit}
                      for p in prepared.patches),
    )


def build(project: Project, release: str, services: list[str], jobs: int = 1, force: bool = False,
          push: bool = False, offline: bool = False) -> list[images.BuildResult]:
    rel = project.release(release)
    for service in services:
        if service not in rel.services:
            raise UnknownComponentError(
                f"{service!r} is not a service of release {release}",
                hint=f"services of {release}: {', '.join(rel.services)} (releases/{release}/release.yaml)",
            )
    if push and not project.settings.registry:
        raise ConfigError("--push needs a registry",
                          hint="set pipeline.registry in invoke.yaml, or INVOKE_PIPELINE_REGISTRY=host:port")
    components = list(dict.fromkeys([*services, *rel.libraries]))
    images.connect()  # fail fast, before any fetching, when there is no engine

    def patch_step(name: str):
        def run(results):
            record = results["fetch"][name]
            with console.step(f"patch {release}/{name}") as outcome:
                prepared, outcome["status"] = patches_stage.prepare(project, project.component(release, name), record)
            return source_input(prepared, record)
        return run

    def image_step(name: str):
        def run(results):
            libraries = {lib: results[f"patch:{lib}"] for lib in rel.libraries}
            with console.step(f"image {release}/{name}") as outcome:
                result = images.build_service(project, release, results[f"patch:{name}"], libraries,
                                              results["constraints"], force=force)
                outcome["status"] = result.action
            return result
        return run

    def sbom_step(name: str):
        def run(results):
            with console.step(f"sbom {release}/{name}") as outcome:
                path, _, outcome["status"] = sbom.generate(project, release, name)
            return path
        return run

    def push_step(name: str):
        def run(results):
            with console.step(f"push {release}/{name} to {project.settings.registry}"):
                return images.push(project, results[f"image:{name}"].record_path)
        return run

    steps = [
        dag.Step("fetch", lambda _: sources.fetch(project, release, components, offline)),
        dag.Step("constraints", lambda _: constraints_stage.build(project, release)[0]),
        *[dag.Step(f"patch:{c}", patch_step(c), ("fetch",)) for c in components],
        *[dag.Step(f"image:{s}", image_step(s), (f"patch:{s}", *[f"patch:{lib}" for lib in rel.libraries], "constraints"))
          for s in services],
        *[dag.Step(f"sbom:{s}", sbom_step(s), (f"image:{s}",)) for s in services],
        *[dag.Step(f"push:{s}", push_step(s), (f"sbom:{s}",)) for s in services if push],
    ]
    results = dag.run(steps, jobs)
    built = [results[f"image:{s}"] for s in services]
    for result in built:  # later steps added the SBOM hash and push digests to the record
        result.record = images.read_json(result.record_path)
    return built
