"""Invoke entry points. Each task parses its flags and calls into ``pipeline``.

Run ``invoke --list`` for the tasks and ``invoke --help <task>`` for flags.
"""

from invoke import Collection, Exit, task

from pipeline import build as build_stage
from pipeline import console
from pipeline import manifest as manifest_stage
from pipeline import sbom as sbom_stage
from pipeline import constraints as constraints_stage
from pipeline import patches as patches_stage
from pipeline import sources
from pipeline import testapply as testapply_stage
from pipeline.cli import project_from, reports_errors
from pipeline.errors import ConfigError

RELEASE_HELP = "OpenStack release, e.g. 2025.2 (a directory under releases/)"
COMPONENT_HELP = "component (repeatable); default: every component of the release"
OFFLINE_HELP = "no network access: use only mirrors and caches (branch refs are not re-resolved)"


@task(iterable=["component"], help={"release": RELEASE_HELP, "component": COMPONENT_HELP, "offline": OFFLINE_HELP})
@reports_errors
def fetch(c, release, component=None, offline=False):
    """Fetch upstream source at each configured ref into build/src/<release>/<component>/."""
    project = project_from(c)
    records = sources.fetch(project, release, component or (), offline)
    for record in records.values():
        console.info(f"  {record.component}: {record.method} {record.ref} -> {record.tree}")
    console.info(f"sources record: {sources.sources_file(project, release)}")


@task(iterable=["component"], help={"release": RELEASE_HELP, "component": COMPONENT_HELP, "offline": OFFLINE_HELP})
@reports_errors
def patch(c, release, component=None, offline=False):
    """Fetch, then apply each patch series, one commit per patch, into build/patched/<release>/<component>/."""
    project = project_from(c)
    for prepared in patches_stage.patch(project, release, component or (), offline):
        console.info(f"  {prepared.component}: {len(prepared.patches)} patch(es) on {prepared.base_commit[:12]} -> {prepared.tree}")


@task(help={"release": RELEASE_HELP, "update": "first write or refresh releases/<release>/upper-constraints.txt from constraints_url"})
@reports_errors
def constraints(c, release, update=False):
    """Write the effective upper-constraints (upstream + overrides - patched components) to build/<release>/."""
    project = project_from(c)
    if update:
        console.info(f"snapshot written: {constraints_stage.update_snapshot(project, release)}")
    path, result = constraints_stage.build(project, release, refresh=update)
    for change in result.changes:
        console.info(f"  {change.action}: {change.name} ({change.why})")
    console.info(f"effective constraints: {path}")


@task(name="list", iterable=["release"], help={"release": "restrict to a release (repeatable)"})
@reports_errors
def list_(c, release=None):
    """Table of every patch: component, release, file, subject."""
    rows = patches_stage.list_patches(project_from(c), release or None)
    console.info(console.table(["component", "release", "patch", "subject"], rows) if rows else "no patches")


@task(iterable=["release"], help={"release": "restrict to a release (repeatable); default: all", "offline": OFFLINE_HELP})
@reports_errors
def check(c, release=None, offline=False):
    """Check that every patch series still applies to its ref; builds nothing, exits non-zero on failure."""
    results = patches_stage.check(project_from(c), release or None, offline)
    rows = [(r.release, r.component, r.patches, "ok" if r.ok else "FAILED") for r in results]
    console.info(console.table(["release", "component", "patches", "result"], rows) if rows else "no patch series")
    failed = [r for r in results if not r.ok]
    for r in failed:
        console.report_error(f"{r.release}/{r.component}: {r.detail}")
    if failed:
        console.info(f"{len(failed)} of {len(results)} series failed")
        raise Exit(code=failed[0].exit_code)


@task(
    iterable=["service"],
    help={
        "release": RELEASE_HELP,
        "service": "service to build (repeatable)",
        "all": "build every service of the release (services: in release.yaml)",
        "jobs": "number of services built in parallel (default 1)",
        "push": "push the image tags to the configured registry (pipeline.registry)",
        "force": "rebuild even when the build record says the image is up to date",
        "offline": OFFLINE_HELP,
    },
)
@reports_errors
def build(c, release, service=None, all=False, jobs=1, push=False, force=False, offline=False):
    """Build tagged service images with their SBOMs: fetch, patch, constraints, image, sbom; output in build/<release>/<service>/."""
    project = project_from(c)
    services = list(project.release(release).services) if all else list(service or [])
    if not services:
        raise ConfigError("name at least one --service, or use --all", hint=f"services: {', '.join(project.release(release).services)}")
    results = build_stage.build(project, release, services, int(jobs), force, push, offline)
    rows = [(r.service, r.action, r.record["tags"][0], r.record["image_id"][7:19], len(r.record["patches"]),
             f"{r.seconds:.1f}s") for r in results]
    console.info(console.table(["service", "result", "image", "id", "patches", "time"], rows))
    for r in results:
        console.info(f"  record: {r.record_path}  log: {r.record['build_log']}")


@task(help={"release": RELEASE_HELP, "service": "service whose built image gets an SBOM"})
@reports_errors
def sbom(c, release, service):
    """Write the CycloneDX 1.6 SBOM of a built image (with patch pedigree) to build/<release>/<service>/sbom.cdx.json."""
    path, digest, action = sbom_stage.generate(project_from(c), release, service)
    console.info(f"sbom {action}: {path} (sha256 {digest[:16]})")


@task(help={"release": RELEASE_HELP})
@reports_errors
def manifest(c, release):
    """Write build/<release>/manifest.yaml: each service's pinned image, version, patches, SBOM hash, defaults."""
    path, data = manifest_stage.write(project_from(c), release)
    rows = [(name, entry["status"], entry.get("image", "-"), entry.get("patches", "-")) for name, entry in data["services"].items()]
    console.info(console.table(["service", "status", "image", "patches"], rows))
    console.info(f"manifest: {path}")


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
    },
)
@reports_errors
def testapply(c, release=None, component=None, defer_tests=False, skip_tests=False, tests=None, jobs=1,
              keep_going=False, offline=False):
    """Apply each patch series one patch at a time and run upstream unit tests (per patch by default)."""
    if defer_tests and skip_tests:
        raise ConfigError("--defer-tests and --skip-tests exclude each other")
    mode = testapply_stage.MODE_SKIP if skip_tests else testapply_stage.MODE_DEFER if defer_tests else testapply_stage.MODE_EACH
    project = project_from(c)
    report = testapply_stage.testapply(project, release or [], component or [], mode, tests, int(jobs), keep_going, offline)
    rows = testapply_stage.table_rows(report)
    console.info(console.table(["series", "patch", "applied", "tests run", "result", "time"], rows) if rows else "no patch series")
    console.info(f"junit: {project.settings.workdir / 'testapply' / 'junit.xml'}")
    for series in report.series:
        if series.error is not None:
            console.report_error(series.error)
    if not report.ok:
        raise Exit(code=report.exit_code)
    if rows:
        console.info(testapply_stage.BANNER)


patches = Collection("patches")
patches.add_task(list_)
patches.add_task(check)

ns = Collection(fetch, patch, constraints, build, sbom, manifest, testapply, patches)
