"""Invoke entry points: each task parses its flags and calls into ``pipeline``.

Run ``invoke --list`` for the tasks and ``invoke --help <task>`` for their
flags.  Modules are imported inside the tasks, so listing tasks or running
one that needs no engine never pays for docker-py or cyclonedx.
"""

from invoke import Collection, task

from pipeline.core.cli import (
    entry,
    offline,
    output_format,
    positive_int,
    project_from,
    read_settings_files,
)
from pipeline.core.settings import defaults

read_settings_files()

RELEASE_HELP = "OpenStack release, e.g. 2025.2 (a directory under releases/)"
COMPONENT_HELP = "component (repeatable); default: every component of the release"
OFFLINE_HELP = "no network: use only mirrors and caches (same result as online once they are filled)"
JOBS_HELP = "steps run in parallel (default 1)"
FORMAT_HELP = "table (default) or json: with json, stdout carries nothing but the JSON"


def _lock_release(project, release):
    from pipeline.core import locks

    return locks.hold(project.layout.lock(release), f"the work directory of {release}")


@task(iterable=["component"], help={"release": RELEASE_HELP, "component": COMPONENT_HELP, "offline": OFFLINE_HELP,
                                    "jobs": JOBS_HELP, "format": FORMAT_HELP})
@entry
def fetch(c, release, component=None, offline_=False, jobs=None, format="table"):
    """Fetch upstream source at each configured ref into build/src/<release>/<component>/."""
    from pipeline.core import console
    from pipeline.sources import fetch as sources

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    project.release(release)
    with _lock_release(project, release):
        records = sources.fetch(project, release, component or (), positive_int(jobs, "--jobs"))
    console.show(sources.as_report(records), fmt)


@task(iterable=["component"], help={"release": RELEASE_HELP, "component": COMPONENT_HELP, "offline": OFFLINE_HELP,
                                    "jobs": JOBS_HELP, "format": FORMAT_HELP})
@entry
def patch(c, release, component=None, offline_=False, jobs=None, format="table"):
    """Fetch, then apply each patch series (one commit per patch) into build/patched/<release>/<component>/."""
    from pipeline.core import console
    from pipeline.patches import series

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    project.release(release)
    with _lock_release(project, release):
        prepared = series.patch(project, release, component or (), positive_int(jobs, "--jobs"))
    console.show(series.patch_report(prepared), fmt)


@task(help={"release": RELEASE_HELP, "update": "first write or refresh releases/<release>/upper-constraints.txt",
            "from": "with --update: the URL or file to take the snapshot from (default: constraints_url)",
            "note": "with --update: a note for the snapshot's header, e.g. the requirements commit",
            "offline": OFFLINE_HELP, "format": FORMAT_HELP})
@entry
def constraints(c, release, update=False, from_=None, note=None, offline_=False, format="table"):
    """Write the effective upper-constraints (upstream + overrides - patched components) to build/<release>/."""
    from pipeline.constraints import effective as stage
    from pipeline.constraints.upstream import update_snapshot
    from pipeline.core import console

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    project.release(release)
    with _lock_release(project, release):
        if update:
            console.note(f"snapshot written: {project.layout.repo_rel(update_snapshot(project, release, from_, note))}")
        record = stage.build(project, release)
    console.show(stage.as_report(record), fmt)


@task(name="list", iterable=["release"], help={"release": "restrict to a release (repeatable)", "format": FORMAT_HELP})
@entry
def list_(c, release=None, format="table"):
    """Table of every patch: release, component, file, type, subject."""
    from pipeline.core import console
    from pipeline.patches import series

    fmt = output_format(format)
    console.show(series.list_report(series.list_patches(project_from(c), release or None)), fmt)


@task(iterable=["release"], help={"release": "restrict to a release (repeatable); default: all", "offline": OFFLINE_HELP,
                                  "format": FORMAT_HELP})
@entry
def check(c, release=None, offline_=False, format="table"):
    """Check that every patch series still applies to its ref (in a git index: no tree is written)."""
    from invoke import Exit

    from pipeline.core import console
    from pipeline.patches import series

    fmt = output_format(format)
    results = series.check(offline(project_from(c), offline_), release or None)
    console.show(series.check_report(results), fmt)
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
    from pipeline.core import console
    from pipeline.core.errors import UsageError

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    rel = project.release(release)
    services = list(rel.services) if all else list(service or [])
    if not services:
        raise UsageError("name at least one --service, or use --all", hint=f"services: {', '.join(rel.services)}")
    report = stage.build(project, release, services, positive_int(jobs, "--jobs"), force, push, keep_going,
                         cache_from)
    console.show(report.as_report(), fmt)
    error = report.first_error()
    if error is not None:
        raise error


@task(help={"release": RELEASE_HELP, "service": "service whose built image gets an SBOM"})
@entry
def sbom(c, release, service):
    """Write the CycloneDX 1.6 SBOM of a built image (patch pedigree) to build/<release>/<service>/sbom.cdx.json."""
    from pipeline.core import console
    from pipeline.provenance import sbom as stage

    project = project_from(c)
    path, digest, action = stage.generate(project, release, service)
    console.result(f"sbom {action}: {project.layout.rel(path)} (sha256 {digest[:16]})")


@task(help={"release": RELEASE_HELP, "service": "service whose built image gets a VEX document"})
@entry
def vex(c, release, service):
    """Write the CycloneDX 1.6 VEX document (advisories touching the image, patches' CVEs) to build/<R>/<S>/vex.cdx.json."""
    from pipeline.core import console
    from pipeline.provenance import vex as stage

    project = project_from(c)
    path, digest, action = stage.generate(project, release, service)
    console.result(f"vex {action}: {project.layout.rel(path)} (sha256 {digest[:16]})")


@task(iterable=["release"], help={"release": "release (repeatable); default: every configured release (as CI does)",
                                  "format": FORMAT_HELP + " (a list when several releases are written)"})
@entry
def manifest(c, release=None, format="table"):
    """Write build/<release>/manifest.yaml: each service's pinned image, version, patches, SBOM and VEX hashes."""
    from pipeline.core import console
    from pipeline.provenance import manifest as stage

    fmt = output_format(format)
    project = project_from(c)
    written = [stage.write(project, name) for name in (release or list(project.releases))]
    console.show(stage.as_report(project, written, one=bool(release) and len(release) == 1), fmt)


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

    from pipeline.core import console
    from pipeline.core.errors import UsageError
    from pipeline.testing import testapply as stage
    from pipeline.testing.results import as_report

    fmt = output_format(format)
    if defer_tests and skip_tests:
        raise UsageError("--defer-tests and --skip-tests exclude each other")
    mode = stage.MODE_SKIP if skip_tests else stage.MODE_DEFER if defer_tests else stage.MODE_EACH
    project = offline(project_from(c), offline_)
    report = stage.testapply(project, release or [], component or [], mode, tests, positive_int(jobs, "--jobs"), keep_going)
    console.show(as_report(report), fmt)
    if fmt != "json":
        console.note(f"junit: {project.layout.rel(project.layout.testapply_root() / 'junit.xml')}")
    for series in report.series:
        if series.error is not None:
            console.report_error(series.error)
    if not report.ok:
        raise Exit(code=report.exit_code)
    if report.series and fmt != "json":
        console.result(stage.BANNER)


@task(help={"offline": "show the settings as a task given --offline uses them", "format": FORMAT_HELP})
@entry
def config(c, offline_=False, format="table"):
    """Every setting: the value a task would use, and where it came from (default, file, environment, flag)."""
    from pipeline.core import console
    from pipeline.core.cli import effective_settings
    from pipeline.core.origins import as_report

    fmt = output_format(format)
    console.show(as_report(effective_settings(c, offline_)), fmt)


# --- the patch lifecycle (pipeline/patches/) -----------------------------------------------------

CONTINUE_HELP = "finish the operation that stopped on a conflict, after resolving it in the worktree it names"
ABORT_HELP = "drop the operation that stopped on a conflict (its worktree); the repository stays as it is"
ONE_COMPONENT_HELP = "the component whose series changes (a key of source-refs.yaml)"


def _resumed(project, release, component, continue_, abort, other_flags):
    """``--continue``/``--abort`` of a stopped operation, or None when neither is given."""
    from pipeline.core.errors import UsageError
    from pipeline.patches import lifecycle

    if not (continue_ or abort):
        return None
    if (continue_ and abort) or other_flags:
        raise UsageError("--continue and --abort go alone (with --release and --component)")
    return lifecycle.resume(project, release, component, abort)


@task(iterable=["commit"], help={
    "release": RELEASE_HELP, "component": ONE_COMPONENT_HELP,
    "commit": "upstream commit (any branch, e.g. master) to cherry-pick as with git cherry-pick -x (repeatable, in order)",
    "from_tree": "make patches of the commits on top of build/patched/<release>/<component> (branch patched)",
    "continue": CONTINUE_HELP, "abort": ABORT_HELP, "offline": OFFLINE_HELP, "format": FORMAT_HELP})
@entry
def new(c, release, component, commit=None, from_tree=False, continue_=False, abort=False, offline_=False,
        format="table"):
    """Add patches: cherry-pick upstream commits, or take the commits made on the prepared tree."""
    from pipeline.core import console
    from pipeline.core.errors import UsageError
    from pipeline.patches import adding

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    rows = _resumed(project, release, component, continue_, abort, bool(commit) or from_tree)
    if rows is None:
        if bool(commit) == from_tree:
            raise UsageError("give either --commit SHA (repeatable) or --from-tree")
        rows = adding.new_from_tree(project, release, component) if from_tree else \
            adding.new_from_commits(project, release, component, list(commit))
    console.show(adding.as_report(rows), fmt)


@task(name="import", help={
    "release": RELEASE_HELP, "component": ONE_COMPONENT_HELP,
    "change": "Gerrit change number, optionally with a patch set: 912345 or 912345/3 (default: the latest)",
    "gerrit": "Gerrit's git base URL instead of the gerrit_base setting (the change is at <URL>/<component>)",
    "continue": CONTINUE_HELP, "abort": ABORT_HELP, "offline": OFFLINE_HELP, "format": FORMAT_HELP})
@entry
def import_(c, release, component, change=None, gerrit=None, continue_=False, abort=False, offline_=False,
            format="table"):
    """Add a Gerrit change under review (and the changes it Depends-On) as the next patches."""
    from pipeline.core import console
    from pipeline.core.errors import UsageError
    from pipeline.patches import adding

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    rows = _resumed(project, release, component, continue_, abort, bool(change or gerrit))
    if rows is None:
        if not change:
            raise UsageError("give --change N[/PS]")
        rows = adding.import_change(project, release, component, change, gerrit)
    console.show(adding.as_report(rows), fmt)


@task(iterable=["component"], help={
    "release": RELEASE_HELP, "component": "component to move (repeatable); default: every component with a series",
    "to": "the new ref: a tag (28.0.2), branch (stable/2025.2) or commit SHA",
    "dry_run": "report what would happen; write nothing and keep no worktree",
    "continue": CONTINUE_HELP + " (one --component)", "abort": ABORT_HELP + " (one --component)",
    "offline": OFFLINE_HELP, "format": FORMAT_HELP})
@entry
def refresh(c, release, component=None, to=None, dry_run=False, continue_=False, abort=False, offline_=False,
            format="table"):
    """Move a release's ref and rebase each series onto it, one patch at a time (3-way)."""
    from pipeline.core import console
    from pipeline.core.errors import UsageError
    from pipeline.patches import lifecycle, reshaping

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    project.release(release)
    names = list(component or [])
    if continue_ or abort:
        if len(names) != 1:
            raise UsageError("--continue and --abort need exactly one --component")
        rows = reshaping.refresh_rows(release, [(names[0], lifecycle.resume(project, release, names[0], abort))])
        error = None
    else:
        if not to:
            raise UsageError("give --to REF (a tag, branch or commit SHA)")
        rows, error = reshaping.refresh_all(project, release, names, to, dry_run)
    console.show(reshaping.refresh_report(rows), fmt)
    if dry_run and error is None:
        console.note("dry run: nothing written")
    if error is not None:
        raise error


@task(iterable=["release", "component"], help={
    "release": "restrict to a release (repeatable); default: all", "component": "restrict to a component (repeatable)",
    "to": "check against this ref instead of each release's own (e.g. the next point release or stable/<release>)",
    "offline": OFFLINE_HELP, "format": FORMAT_HELP})
@entry
def upstreamed(c, release=None, component=None, to=None, offline_=False, format="table"):
    """Which patches upstream already contains (exit 61 when some can be dropped)."""
    from invoke import Exit

    from pipeline.core import console
    from pipeline.core.errors import UPSTREAMED_EXIT
    from pipeline.patches import upstream

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    rows = upstream.upstreamed(project, release or None, list(component or []), to)
    console.show(upstream.as_report(rows), fmt)
    found = [r for r in rows if r["upstream"]]
    if found:
        console.note(f"{len(found)} of {len(rows)} patches are upstream: drop them with invoke patches.remove "
                     "(or move the ref with invoke patches.refresh)")
        raise Exit(code=UPSTREAMED_EXIT)


@task(name="candidates", iterable=["component"], help={
    "release": RELEASE_HELP, "component": "component to search (repeatable); default: every component of the release",
    "offline": OFFLINE_HELP, "format": FORMAT_HELP})
@entry
def candidates_(c, release, component=None, offline_=False, format="table"):
    """Upstream fixes the series could take next (advisory and security fixes first), each checked to apply."""
    from pipeline.core import console
    from pipeline.provenance import candidates

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    project.release(release)
    found, about = candidates.candidates(project, release, list(component or []))
    console.show(candidates.as_report(found, about), fmt)


@task(positional=["patch"], help={
    "release": RELEASE_HELP, "component": ONE_COMPONENT_HELP,
    "patch": "the patch: its file name, repository path or number", "renumber": "close the gap: renumber the rest",
    "offline": OFFLINE_HELP})
@entry
def remove(c, patch, release, component, renumber=False, offline_=False):
    """Remove a patch from a series (refused when the rest would no longer apply)."""
    from pipeline.core import console
    from pipeline.patches import reshaping

    project = offline(project_from(c), offline_)
    for old, new_name in reshaping.remove_patch(project, release, component, patch, renumber):
        console.result(f"renamed: {old} -> {new_name}")


@task(name="renumber", help={"release": RELEASE_HELP, "component": ONE_COMPONENT_HELP, "offline": OFFLINE_HELP})
@entry
def renumber_(c, release, component, offline_=False):
    """Number a series 1..n in its order, at one width (files renamed, nothing else changed)."""
    from pipeline.core import console
    from pipeline.patches import reshaping

    renamed = reshaping.renumber(offline(project_from(c), offline_), release, component)
    console.result("\n".join(f"renamed: {old} -> {new_name}" for old, new_name in renamed) or "already numbered 1..n")


@task(iterable=["release", "component"], help={
    "release": "restrict to a release (repeatable); default: all", "component": "restrict to a component (repeatable)",
    "strict": "exit 63 when there are findings", "date": "the day to decide support phases on (YYYY-MM-DD; default today)",
    "offline": OFFLINE_HELP, "format": FORMAT_HELP + " (a list of findings)"})
@entry
def audit(c, release=None, component=None, strict=False, date=None, offline_=False, format="table"):
    """Check every patch against the stable branch policy: support phase, provenance, findings."""
    import datetime

    from invoke import Exit

    from pipeline.core import console
    from pipeline.core.errors import AUDIT_FINDINGS_EXIT, UsageError
    from pipeline.patches import audit as stage

    fmt = output_format(format)
    try:
        today = datetime.date.fromisoformat(date) if date else datetime.date.today()
    except ValueError:
        raise UsageError(f"--date {date!r} is not a date", hint="e.g. --date 2026-12-01") from None
    project = offline(project_from(c), offline_)
    phases, rows, findings = stage.audit(project, release or None, list(component or []), today)
    console.show(stage.as_report(phases, rows, findings), fmt)
    if findings:
        console.note(f"{len(findings)} finding(s) in {len({f.patch for f in findings})} patch(es)")
    if strict and findings:
        raise Exit(code=AUDIT_FINDINGS_EXIT)


# --- export, hotpatch, cve, CI (pipeline/export.py, hotpatch.py, cve.py, ci.py) -----------------------------


@task(iterable=["component"], help={"release": RELEASE_HELP, "component": COMPONENT_HELP, "offline": OFFLINE_HELP,
                                    "jobs": JOBS_HELP, "format": FORMAT_HELP})
@entry
def export(c, release, component=None, offline_=False, jobs=None, format="table"):
    """Archive each patched tree reproducibly (no .git; pbr metadata) into build/export/<release>/, with SHA256SUMS."""
    from pipeline.core import console
    from pipeline.patches import export as stage

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    exported = stage.export(project, release, component or (), positive_int(jobs, "--jobs"))
    console.show(stage.as_report(project, release, exported), fmt)


@task(help={"release": RELEASE_HELP, "service": "service whose patches (and its libraries' patches) are copied",
            "container": "name or ID of the running container to copy them into",
            "offline": OFFLINE_HELP, "format": FORMAT_HELP})
@entry
def hotpatch(c, release, service, container, offline_=False, format="table"):
    """Copy the files a service's and its libraries' patches change into a running container's venv (prints how to undo)."""
    from pipeline.core import console
    from pipeline.image import hotpatch as stage

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    result = stage.hotpatch(project, release, service, container)
    console.show(stage.as_report(project, result), fmt)


@task(name="advisories", iterable=["release", "service"], help={
    "release": "release to assess (repeatable); default: every configured release",
    "service": "service whose image is assessed (repeatable); default: every service",
    "strict": "exit 64 when an image is affected by an advisory nothing fixes",
    "all": "also list the advisories whose ranges leave the installed versions out (not affected)",
    "offline": "use the advisory sources as last fetched (no git ls-remote)", "format": FORMAT_HELP})
@entry
def advisories(c, release=None, service=None, strict=False, all=False, offline_=False, format="table"):
    """Which OpenStack (OSSA) and PyPI advisories touch each built image: fixed by patch or override, not affected, affected."""
    from invoke import Exit

    from pipeline.core import console
    from pipeline.core.errors import ADVISORIES_AFFECTED_EXIT
    from pipeline.provenance import assessment

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    report = assessment.report(project, list(release or []), list(service or []), refresh=not project.settings.offline)
    for line in report.database.skipped:
        console.warn(line)
    for row in report.images:
        if not row["assessed"]:
            console.note(f"{row['release']} {row['service']}: {row['reason']}: not assessed")
    console.note("advisories: " + "; ".join(f"{k} {v}" for k, v in report.database.sources.items()))
    console.show(assessment.as_report(report, all), fmt)
    if report.affected:
        console.note(f"{len(report.affected)} advisory finding(s) affect {len({(f.release, f.service) for f in report.affected})} "
                     "image(s)")
        if strict:
            raise Exit(code=ADVISORIES_AFFECTED_EXIT)


@task(name="cve", positional=["cve_id"], help={"cve_id": "the CVE to look for, e.g. CVE-2026-44394", "format": FORMAT_HELP})
@entry
def cve(c, cve_id, format="table"):
    """Which releases carry a patch (or override) that resolves a CVE, which built images hold it, which lack it."""
    from pipeline.core import console
    from pipeline.provenance import cve as stage

    fmt = output_format(format)
    console.show(stage.as_report(stage.query(project_from(c), cve_id)), fmt)


@task(name="matrix", help={"base": "commit to compare with (default HEAD^; 40 zeros: no previous commit, everything)",
                           "head": "commit whose images are built (default HEAD)",
                           "format": "json (default) or github: one line matrix=<json> for $GITHUB_OUTPUT"})
@entry
def ci_matrix(c, base=None, head=None, format="json"):
    """The (release, service) images and testapply series affected between two commits of this repository."""
    from pipeline import ci
    from pipeline.core import console
    from pipeline.core.errors import UsageError

    if format not in ("json", "github"):
        raise UsageError(f"--format {format!r} is not known", hint="use json or github")
    project = project_from(c)
    matrix = ci.matrix(project, base or "", head or "HEAD")
    for note in matrix.notes:
        console.note(note)
    console.note(f"{len(matrix.include)} image(s) affected between {matrix.base[:12]} and {matrix.head[:12]}")
    if format == "github":
        console.result(ci.github_output(matrix))
    else:
        console.result_json(matrix.to_dict())


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
    from pipeline.build import with_cache
    from pipeline.core import console
    from pipeline.image import bake as stage

    fmt = output_format(format)
    project = with_cache(offline(project_from(c), offline_), cache_from)
    services = list(service or project.release(release).services)
    path, data = stage.write(project, release, services, positive_int(jobs, "--jobs"))
    console.show(stage.as_report(project, path, data), fmt)


@task(
    iterable=["service"],
    help={
        "release": RELEASE_HELP,
        "service": "service to prove (repeatable; the services it needs come too); default: every service",
        "jobs": "images built in parallel (default 2)",
        "offline": OFFLINE_HELP,
        "format": FORMAT_HELP,
    },
)
@entry
def smoke(c, release, service=None, jobs=None, offline_=False, format="table"):
    """Prove the images serve: a real control plane (MariaDB, RabbitMQ, memcached, OVN), every process, client checks."""
    from pipeline.core import console
    from pipeline.testing.smoke import summary
    from pipeline.testing.smoke.run import smoke as stage

    fmt = output_format(format)
    project = offline(project_from(c), offline_)
    report = stage(project, release, list(service or []), positive_int(jobs, "--jobs", default=2))
    console.show(summary.as_report(project, release, report), fmt)
    if report.error is not None:
        raise report.error


patches = Collection("patches")
patches.add_task(list_)
patches.add_task(check)
patches.add_task(new)
patches.add_task(import_)
patches.add_task(refresh)
patches.add_task(upstreamed)
patches.add_task(remove)
patches.add_task(renumber_)
patches.add_task(audit)
patches.add_task(candidates_)

ns = Collection(fetch, patch, constraints, build, sbom, vex, manifest, testapply, patches)
# The one table of defaults (settings.OPTIONS): invoke.yaml and -f files only change them, and INVOKE_PIPELINE_*
# variables work because invoke reads a variable only for a key that has a default.
ns.configure({"pipeline": defaults()})
ci_tasks = Collection("ci")
ci_tasks.add_task(ci_matrix)
ns.add_task(export)
ns.add_task(hotpatch)
ns.add_task(cve)
ns.add_task(advisories)
ns.add_collection(ci_tasks)
ns.add_task(bake)
ns.add_task(smoke)
ns.add_task(config)
