"""Invoke entry points: each task parses its flags and calls into ``pipeline``.

Run ``invoke --list`` for the tasks and ``invoke --help <task>`` for their
flags.  Modules are imported inside the tasks, so listing tasks or running
one that needs no engine never pays for docker-py or cyclonedx.
"""

from invoke import Collection, task

from pipeline.cli import entry, offline, output_format, positive_int, project_from

RELEASE_HELP = "OpenStack release, e.g. 2025.2 (a directory under releases/)"
COMPONENT_HELP = "component (repeatable); default: every component of the release"
OFFLINE_HELP = "no network: use only mirrors and caches (same result as online once they are filled)"
JOBS_HELP = "steps run in parallel (default 1)"
FORMAT_HELP = "table (default) or json: with json, stdout carries nothing but the JSON"


def _lock_release(project, release):
    from pipeline import locks

    return locks.hold(project.layout.lock(release), f"the work directory of {release}")


@task(iterable=["component"], help={"release": RELEASE_HELP, "component": COMPONENT_HELP, "offline": OFFLINE_HELP,
                                    "jobs": JOBS_HELP, "format": FORMAT_HELP})
@entry
def fetch(c, release, component=None, offline_=False, jobs=None, format="table"):
    """Fetch upstream source at each configured ref into build/src/<release>/<component>/."""
    from pipeline import console, sources

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    project.release(release)
    with _lock_release(project, release):
        records = sources.fetch(project, release, component or (), positive_int(jobs, "--jobs"))
    rows = [{"component": r.component, "method": r.method, "ref": r.ref, "commit": r.commit, "version": r.version,
             "tree": r.tree} for r in records.values()]
    if fmt == "json":
        console.result_json(rows)
    else:
        console.result(console.table(["component", "method", "ref", "commit", "version", "tree"],
                                     [(r["component"], r["method"], r["ref"], r["commit"][:12], r["version"], r["tree"])
                                      for r in rows]))


@task(iterable=["component"], help={"release": RELEASE_HELP, "component": COMPONENT_HELP, "offline": OFFLINE_HELP,
                                    "jobs": JOBS_HELP, "format": FORMAT_HELP})
@entry
def patch(c, release, component=None, offline_=False, jobs=None, format="table"):
    """Fetch, then apply each patch series (one commit per patch) into build/patched/<release>/<component>/."""
    from pipeline import console, series

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    project.release(release)
    with _lock_release(project, release):
        prepared = series.patch(project, release, component or (), positive_int(jobs, "--jobs"))
    rows = [{"component": p.component, "patches": len(p.patches), "base": p.base_commit, "head": p.head, "tree": p.tree}
            for p in prepared]
    if fmt == "json":
        console.result_json(rows)
    else:
        console.result(console.table(["component", "patches", "base", "head", "tree"],
                                     [(r["component"], r["patches"], r["base"][:12], r["head"][:12], r["tree"]) for r in rows]))


@task(help={"release": RELEASE_HELP, "update": "first write or refresh releases/<release>/upper-constraints.txt",
            "from": "with --update: the URL or file to take the snapshot from (default: constraints_url)",
            "note": "with --update: a note for the snapshot's header, e.g. the requirements commit",
            "offline": OFFLINE_HELP, "format": FORMAT_HELP})
@entry
def constraints(c, release, update=False, from_=None, note=None, offline_=False, format="table"):
    """Write the effective upper-constraints (upstream + overrides - patched components) to build/<release>/."""
    from pipeline import console
    from pipeline import constraints as stage

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    project.release(release)
    with _lock_release(project, release):
        if update:
            console.note(f"snapshot written: {project.layout.repo_rel(stage.update_snapshot(project, release, from_, note))}")
        record = stage.build(project, release)
    if fmt == "json":
        console.result_json(record.to_dict())
    else:
        console.result(console.table(["package", "action", "upstream", "effective", "why"],
                                     [(ch.name, ch.action, ", ".join(ch.old) or "-", ", ".join(ch.new) or "-", ch.why)
                                      for ch in record.changes]) + f"\neffective constraints: {record.path}")


@task(name="list", iterable=["release"], help={"release": "restrict to a release (repeatable)", "format": FORMAT_HELP})
@entry
def list_(c, release=None, format="table"):
    """Table of every patch: release, component, file, type, subject."""
    from pipeline import console, series

    fmt = output_format(format)
    rows = series.list_patches(project_from(c), release or None)
    if fmt == "json":
        console.result_json(rows)
    else:
        console.result(console.table(["release", "component", "patch", "type", "subject"],
                                     [(r["release"], r["component"], r["patch"], r["type"], r["subject"]) for r in rows])
                       if rows else "no patches")


@task(iterable=["release"], help={"release": "restrict to a release (repeatable); default: all", "offline": OFFLINE_HELP,
                                  "format": FORMAT_HELP})
@entry
def check(c, release=None, offline_=False, format="table"):
    """Check that every patch series still applies to its ref (in a git index: no tree is written)."""
    from invoke import Exit

    from pipeline import console, series

    fmt = output_format(format)
    results = series.check(offline(project_from(c), offline_), release or None)
    if fmt == "json":
        console.result_json([r.__dict__ for r in results])
    else:
        rows = [(r.release, r.component, r.patches, "ok" if r.ok else "FAILED") for r in results]
        console.result(console.table(["release", "component", "patches", "result"], rows) if rows else "no patch series")
    failed = [r for r in results if not r.ok]
    for r in failed:
        console.report_error(f"{r.release}/{r.component}: {r.detail}")
    if failed:
        console.note(f"{len(failed)} of {len(results)} series failed")
        raise Exit(code=failed[0].exit_code)


@task(
    iterable=["service"],
    help={
        "release": RELEASE_HELP,
        "service": "service to build (repeatable)",
        "all": "build every service of the release (services: in release.yaml)",
        "jobs": "services built in parallel (default 1)",
        "push": "push the image tags to the configured registry (pipeline.registry)",
        "force": "rebuild every layer above the base images, without the engine's cache",
        "keep_going": "after a failing service, go on with the others and report them all",
        "cache_from": "registry of the shared layer cache (host[:port][/path]): pull unchanged images from it, "
                      "push new ones (default: pipeline.cache_registry)",
        "offline": OFFLINE_HELP,
        "format": FORMAT_HELP,
    },
)
@entry
def build(c, release, service=None, all=False, jobs=None, push=False, force=False, keep_going=False, cache_from=None,
          offline_=False, format="table"):
    """Build tagged service images with SBOM and VEX: fetch, patch, constraints, image, sbom, vex (, push)."""
    from pipeline import build as stage
    from pipeline import console
    from pipeline.errors import UsageError

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    rel = project.release(release)
    services = list(rel.services) if all else list(service or [])
    if not services:
        raise UsageError("name at least one --service, or use --all", hint=f"services: {', '.join(rel.services)}")
    report = stage.build(project, release, services, positive_int(jobs, "--jobs"), force, push, keep_going,
                         cache_from)
    rows = report.rows()
    if fmt == "json":
        console.result_json(rows)
    else:
        console.result(console.table(["service", "result", "image", "id", "patches", "time"],
                                     [(r["service"], r["result"] if not r["failed"] else f"{r['result']}, {r['failed']}",
                                       r["image"] or "-", (r["image_id"] or "")[7:19] or "-",
                                       r["patches"] if r["patches"] is not None else "-", f"{r['seconds']:.1f}s")
                                      for r in rows]))
    error = report.first_error()
    if error is not None:
        raise error


@task(help={"release": RELEASE_HELP, "service": "service whose built image gets an SBOM"})
@entry
def sbom(c, release, service):
    """Write the CycloneDX 1.6 SBOM of a built image (patch pedigree) to build/<release>/<service>/sbom.cdx.json."""
    from pipeline import console
    from pipeline import sbom as stage

    project = project_from(c)
    path, digest, action = stage.generate(project, release, service)
    console.result(f"sbom {action}: {project.layout.rel(path)} (sha256 {digest[:16]})")


@task(help={"release": RELEASE_HELP, "service": "service whose built image gets a VEX document"})
@entry
def vex(c, release, service):
    """Write the CycloneDX 1.6 VEX document (CVEs the patches resolve) to build/<release>/<service>/vex.cdx.json."""
    from pipeline import console
    from pipeline import vex as stage

    project = project_from(c)
    path, digest, action = stage.generate(project, release, service)
    console.result(f"vex {action}: {project.layout.rel(path)} (sha256 {digest[:16]})")


@task(help={"release": RELEASE_HELP, "format": FORMAT_HELP})
@entry
def manifest(c, release, format="table"):
    """Write build/<release>/manifest.yaml: each service's pinned image, version, patches, SBOM and VEX hashes."""
    from pipeline import console
    from pipeline import manifest as stage

    fmt = output_format(format)
    project = project_from(c)
    path, data = stage.write(project, release)
    if fmt == "json":
        console.result_json(data)
    else:
        rows = [(name, e["status"], e.get("image", "-"), e.get("patches", "-")) for name, e in data["services"].items()]
        console.result(console.table(["service", "status", "image", "patches"], rows) + f"\nmanifest: {project.layout.rel(path)}")


@task(
    iterable=["release", "component"],
    help={
        "release": "release to test (repeatable); default: every release with patches",
        "component": "component to test (repeatable); default: every component with patches",
        "defer_tests": "run the tests once, after the last patch of each series",
        "skip_tests": "apply only: run no tests",
        "tests": "stestr filter to run instead of the default selection; 'all' runs the full suite after every patch",
        "jobs": "series run in parallel (default 1)",
        "keep_going": "after a failing series, go on with the others and report them all",
        "offline": OFFLINE_HELP,
        "format": FORMAT_HELP,
    },
)
@entry
def testapply(c, release=None, component=None, defer_tests=False, skip_tests=False, tests=None, jobs=None,
              keep_going=False, offline_=False, format="table"):
    """Apply each patch series one patch at a time and run upstream unit tests (impacted tests per patch by default)."""
    from invoke import Exit

    from pipeline import console
    from pipeline import testapply as stage
    from pipeline.errors import UsageError

    fmt = output_format(format)
    if defer_tests and skip_tests:
        raise UsageError("--defer-tests and --skip-tests exclude each other")
    mode = stage.MODE_SKIP if skip_tests else stage.MODE_DEFER if defer_tests else stage.MODE_EACH
    project = offline(project_from(c), offline_)
    report = stage.testapply(project, release or [], component or [], mode, tests, positive_int(jobs, "--jobs"), keep_going)
    if fmt == "json":
        console.result_json(stage.report_json(report))
    else:
        rows = stage.table_rows(report)
        console.result(console.table(["series", "patch", "applied", "tests run", "result", "time"], rows)
                       if rows else "no patch series")
        console.note(f"junit: {project.layout.rel(project.layout.testapply_root() / 'junit.xml')}")
    for series in report.series:
        if series.error is not None:
            console.report_error(series.error)
    if not report.ok:
        raise Exit(code=report.exit_code)
    if report.series and fmt != "json":
        console.result(stage.BANNER)


@task(
    iterable=["service"],
    help={
        "release": RELEASE_HELP,
        "service": "service to write a target for (repeatable); default: every service of the release",
        "cache_from": "registry of the shared layer cache: base images are pushed there and named by it, "
                      "so remote builders can pull them (default: pipeline.cache_registry)",
        "jobs": JOBS_HELP,
        "offline": OFFLINE_HELP,
        "format": FORMAT_HELP,
    },
)
@entry
def bake(c, release, service=None, cache_from=None, jobs=None, offline_=False, format="table"):
    """Write build/<release>/docker-bake.json for `docker buildx bake`: one target per service, named contexts."""
    from pipeline import bake as stage
    from pipeline import console
    from pipeline.build import with_cache

    fmt = output_format(format)
    project = with_cache(offline(project_from(c), offline_), cache_from)
    services = list(service or project.release(release).services)
    path, data = stage.write(project, release, services, positive_int(jobs, "--jobs"))
    if fmt == "json":
        console.result_json(data)
    else:
        console.result(console.table(["target", "tag", "named contexts"],
                                     [(name, t["tags"][0], ", ".join(t["contexts"])) for name, t in data["target"].items()])
                       + f"\nbake file: {project.layout.rel(path)} (docker buildx bake -f {path})")


patches = Collection("patches")
patches.add_task(list_)
patches.add_task(check)

ns = Collection(fetch, patch, constraints, build, sbom, vex, manifest, testapply, patches)
ns.add_task(bake)
