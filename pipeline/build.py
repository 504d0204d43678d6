"""The build DAG: fetch -> patch -> constraints -> image -> sbom (-> push) per service.

Wires the stages together for ``invoke build``; each stage decides from its
own stamps or records whether it has work to do, so a rerun with nothing
changed makes no build call at all.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import console, dag, images, sbom
from . import constraints as constraints_stage
from . import patches as patches_stage
from . import sources
from .config import Project
from .errors import UnknownComponentError
from .git import GitError, git
from .patches import PreparedTree
from .sources import SourceRecord


def package_version(record: SourceRecord, tree: Path) -> str:
    """The version pbr must give the installed package (PBR_VERSION).

    Tags and sdists carry it; for a branch or SHA it is derived pbr-style from
    the nearest tag in the fetched history ("next patch release .devN").
    """
    if record.version:
        return record.version
    try:
        described = git("describe", "--tags", "--long", "--match", "[0-9]*", record.commit, cwd=tree).strip()
        m = re.match(r"^(\d+(?:\.\d+)*)-(\d+)-g[0-9a-f]+$", described)
        if m:
            parts = [int(x) for x in m.group(1).split(".")]
            if int(m.group(2)) == 0:
                return m.group(1)
            parts[-1] += 1
            return ".".join(map(str, parts)) + f".dev{m.group(2)}"
    except GitError:
        pass
    console.warn(f"{record.component}: ref {record.ref} has no release tag in its fetched history; "
                 "versioning it 0.0.0.dev0 (pin a tag in source-refs.yaml for a real version)")
    return "0.0.0.dev0"


def source_input(prepared: PreparedTree, record: SourceRecord) -> images.SourceInput:
    tree = Path(prepared.tree)
    return images.SourceInput(
        component=prepared.component,
        version=package_version(record, tree),
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
            if push:
                images.push(project, results[f"image:{name}"].record_path)
            results[f"image:{name}"].record = images.read_json(results[f"image:{name}"].record_path)
            return path
        return run

    steps = [
        dag.Step("fetch", lambda _: sources.fetch(project, release, components, offline)),
        dag.Step("constraints", lambda _: constraints_stage.build(project, release)[0]),
        *[dag.Step(f"patch:{c}", patch_step(c), ("fetch",)) for c in components],
        *[dag.Step(f"image:{s}", image_step(s), (f"patch:{s}", *[f"patch:{lib}" for lib in rel.libraries], "constraints"))
          for s in services],
        *[dag.Step(f"sbom:{s}", sbom_step(s), (f"image:{s}",)) for s in services],
    ]
    results = dag.run(steps, jobs)
    return [results[f"image:{s}"] for s in services]
