"""testapply: apply each patch series one patch at a time and run the upstream unit tests.

Owns the testing trees at ``<workdir>/testapply/<release>/<component>/tree``
(recreated on every run, kept after a failure for inspection), the choice of
tests after each patch (``impact``: tests reached through the import graph, a
selector, or the full suite), the nox-managed virtual environment per
(release, component) under ``cache_dir`` and when it must be reinstalled,
the results (read from stestr's subunit stream, exactly: passed, failed,
skipped, expected failures), the result table, the JUnit XML at
``<workdir>/testapply/junit.xml`` and the exit code.  Series run on
``runner.run``, in parallel with ``--jobs``, with ``--keep-going``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from pipeline.constraints import effective as constraints_stage
from pipeline.core import console, locks, runner
from pipeline.core.errors import (
    PatchApplyError,
    PipelineError,
    TestEnvironmentError,
    TestsFailedError,
    UnknownComponentError,
)
from pipeline.core.files import read_json, write_json
from pipeline.core.git import text
from pipeline.core.redact import redact
from pipeline.core.releases import Project
from pipeline.core.settings import PROJECT_ROOT
from pipeline.core.stamps import Stamp
from pipeline.patches.applying import apply_series, clone_pristine
from pipeline.patches.records import AppliedPatch
from pipeline.patches.series import all_series, discover
from pipeline.sources.fetch import fetch_component
from pipeline.testing import impact
from pipeline.testing.results import (
    END_OF_SERIES,
    SUBUNIT_SCRIPT,
    Report,
    SeriesResult,
    StepResult,
    TestCounts,
    counts_of,
    write_junit,
)
from pipeline.testing.testenv import (
    SPEC_ENV,
    SessionSpec,
    extras_requirements,
    nox_session_name,
    tox_test_env,
)

DEFAULT_TEST_COMMAND = "stestr run"
ALL = "all"
BANNER = "All patches applied correctly."
MODE_EACH, MODE_DEFER, MODE_SKIP = "each", "defer", "skip"


# --- the nox side ------------------------------------------------------------------------


# --- the upstream test environment ---------------------------------------------------------


# --- results ---------------------------------------------------------------------------


def _test_command(project: Project, component: str) -> list[str]:
    return project.settings.test_commands.get(component, DEFAULT_TEST_COMMAND).split()


class SeriesRunner:
    """Applies one series in a fresh tree and runs tests as asked."""

    def __init__(self, project: Project, release: str, component: str, mode: str, selector: str | None) -> None:
        self.project, self.release, self.component = project, release, component
        self.mode, self.selector = mode, selector
        layout = project.layout
        self.base = layout.testapply_series(release, component)
        self.tree = self.base / "tree"
        self.log_path = self.base / "testapply.log"
        self.result = SeriesResult(release, component, tree=layout.rel(self.tree), log=layout.rel(self.log_path))
        self.at_ref = ""
        self.venv: Path | None = None
        self.graph: impact.ImportGraph | None = None

    # --- the environment -------------------------------------------------------------
    def spec(self, version: str) -> SessionSpec:
        tox = tox_test_env(self.tree)
        # tox installs the package itself with its dependencies (unless skip_install): the tree's own
        # requirements go into the first install, the tree then goes in without dependencies.
        files = list(dict.fromkeys([*tox.files, *(["requirements.txt"] if (self.tree / "requirements.txt").exists() else [])]))
        return SessionSpec(
            release=self.release, component=self.component, tree=str(self.tree),
            constraints=str(self.project.layout.effective_constraints(self.release)),
            requirement_files=tuple(str(self.tree / name) for name in files),
            requirements=(*tox.literal, *extras_requirements(self.tree, tox.extras)),
            extras=tox.extras, version=version,
        )

    def ensure_venv(self, spec: SessionSpec, log: TextIO) -> Path:
        """The nox-managed venv of this (release, component), (re)installed only when its inputs changed."""
        layout = self.project.layout
        venvs = layout.test_venvs()  # a cache: it outlives a wiped work directory
        stamp = Stamp(venvs / f"{self.release}-{self.component}.json")
        inputs = [[Path(r).read_text() for r in spec.requirement_files], spec.requirements, spec.extras,
                  Path(spec.constraints).read_text(), spec.version, spec.tree, sys.version,
                  self.project.network.index_public]
        with locks.hold(layout.cache_lock(f"venv-{self.release}-{self.component}"),
                        f"the test environment of {self.result.name}"):
            previous = stamp.current(inputs)
            # The tree is recreated at the same path on every run, so the editable install still points at it.
            if previous and (Path(previous["venv"]) / "bin" / "python").exists():
                return Path(previous["venv"])
            stamp.clear()
            location = self._nox(spec, log, venvs)
            stamp.record(inputs, {"venv": str(location)})
            return location

    def _nox(self, spec: SessionSpec, log: TextIO, venvs: Path) -> Path:
        spec_file = self.base / "nox-spec.json"
        write_json(spec_file, asdict(spec))
        location = self.base / "venv-location"
        location.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "nox", "-f", str(PROJECT_ROOT / "noxfile.py"), "--envdir", str(venvs),
               "-s", nox_session_name(self.release, self.component), "--reuse-venv", "yes", "--install-only",
               "--no-color"]
        env = {**os.environ, **self.project.network.tool_env(), SPEC_ENV: str(spec_file),
               "OPENSTACK_PATCHES_VENV_RECORD": str(location), "NO_COLOR": "1"}
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        progress = console.Progress(f"{self.result.name} environment")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=env,
                                text=True, errors="replace")
        tail: list[str] = []
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:
            line = redact(console.strip_ansi(line))
            log.write(line)
            tail = [*tail, line.rstrip()][-12:]
            if line.strip():
                progress.update(line.strip()[:90])
        proc.wait()
        progress.done()
        if proc.returncode != 0 or not location.exists():
            detail = "\n    ".join(t for t in tail if t.strip())
            raise TestEnvironmentError(
                f"{self.result.name}: the test environment could not be installed (nox exit {proc.returncode}):\n    {detail}",
                hint=f"full log: {self.log_path}; the requirements come from upstream's tox.ini under the release's "
                     "effective constraints (scripts/setup installs the host packages suites build against)",
            )
        return Path(location.read_text().strip())

    # --- tests --------------------------------------------------------------------------
    def run_tests(self, spec: SessionSpec, args: list[str], log: TextIO) -> TestCounts:
        """Run the test command in the venv nox manages; results from stestr's subunit stream."""
        venv = self.venv or self.ensure_venv(spec, log)
        self.venv = venv
        tox = tox_test_env(self.tree)
        env = {**os.environ, **dict(tox.env), "VIRTUAL_ENV": str(venv),
               "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("PBR_VERSION", None)
        command = [*_test_command(self.project, self.component), *args]
        log.write(f"\n$ cd {spec.tree} && {' '.join(command)}\n")
        log.flush()
        progress = console.Progress(f"{self.result.name} tests")
        # The whole suite's size is known from the last whole run of this series (stestr only says at the end).
        counts_file = self.project.layout.test_venvs() / f"{self.release}-{self.component}.tests.json"
        known = (read_json(counts_file) or {}).get("tests") if not args else None
        ran = 0
        proc = subprocess.Popen(command, cwd=spec.tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:
            log.write(redact(console.strip_ansi(line)))
            if re.match(r"^\{\d+\} \S+ .*\.\.\. ", line):
                ran += 1
                progress.update(f"{ran} of ~{known} tests run" if known else f"{ran} tests run")
        proc.wait()
        progress.done()
        if command[0] != "stestr":
            if proc.returncode != 0:
                return TestCounts(failed=1, cases=[{"id": " ".join(command), "status": "fail", "seconds": 0.0,
                                                    "details": {"reason": f"exit {proc.returncode}"}}])
            return TestCounts(passed=1, cases=[{"id": " ".join(command), "status": "success", "seconds": 0.0, "details": {}}])
        subunit = subprocess.run([str(venv / "bin" / "stestr"), "last", "--subunit"], cwd=spec.tree, env=env,
                                 capture_output=True)
        parsed = subprocess.run([str(venv / "bin" / "python"), "-c", SUBUNIT_SCRIPT], input=subunit.stdout,
                                capture_output=True, env=env)
        if subunit.returncode != 0 or parsed.returncode != 0:
            raise TestEnvironmentError(
                f"{self.result.name}: the test runner produced no results (exit {proc.returncode}): "
                f"{(subunit.stderr or parsed.stderr).decode(errors='replace').strip()[-400:]}",
                hint=f"see {self.log_path}: the suite may not even be importable on this tree",
            )
        counts = counts_of(json.loads(parsed.stdout))
        if not args and counts.total:
            write_json(counts_file, {"tests": counts.total})
        if proc.returncode != 0 and not counts.failures:
            raise TestEnvironmentError(
                f"{self.result.name}: the test command failed (exit {proc.returncode}) without failing tests "
                "(discovery or an import error?)", hint=f"see {self.log_path}")
        return counts

    # --- the series ---------------------------------------------------------------------------
    def execute(self) -> SeriesResult:
        layout = self.project.layout
        with locks.hold(layout.lock(f"testapply-{self.release}-{self.component}"), f"the testapply tree of {self.result.name}"):
            return self._execute()

    def _execute(self) -> SeriesResult:
        patches, _ = discover(self.project.layout.series_dir(self.component, self.release))
        component = self.project.component(self.release, self.component)
        if self.base.exists():
            shutil.rmtree(self.base)  # a rerun always starts clean
        self.base.mkdir(parents=True)
        with self.log_path.open("w") as log:
            try:
                with locks.hold(self.project.layout.lock(self.release), f"the work directory of {self.release}"):
                    source, _ = fetch_component(self.project, component)
                    clone_pristine(self.project, source, self.tree)
                self.at_ref = f"ref {source.ref} = {source.upstream_revision or source.commit}"
                text("checkout", "--quiet", "-B", "testapply", source.commit, cwd=self.tree)
                applied: list[AppliedPatch] = []

                def after_apply(patch: AppliedPatch) -> None:
                    applied.append(patch)
                    step = StepResult(self.result.name, Path(patch.file).name, True)
                    self.result.steps.append(step)
                    text("checkout", "--quiet", "-f", "-B", "testapply", patch.committed, cwd=self.tree)
                    self.test_after(step, patch, len(applied) == len(patches), source.version, log)

                try:
                    apply_series(self.project, component, source, patches, self.tree, source.commit, commit=True,
                                 on_applied=after_apply)
                except PatchApplyError as error:
                    failing = patches[len(applied)].name
                    self.result.steps.append(StepResult(self.result.name, failing, False,
                                                        detail=_first_detail(error.message)))
                    raise PatchApplyError(f"{self.result.name}: {error.message}",
                                          hint=f"{error.hint}; the tree is kept at {self.result.tree}, "
                                               f"the log at {self.result.log}") from None
            except PipelineError as error:
                self.result.error = error
                log.write(f"ERROR: {error}\n")
                if self.result.steps and not self.result.steps[-1].error and isinstance(error, TestEnvironmentError):
                    self.result.steps[-1].error = error.message
        return self.result

    def test_after(self, step: StepResult, patch: AppliedPatch, last: bool, version: str, log: TextIO) -> None:
        started = time.monotonic()
        args: list[str] | None = None
        if self.mode == MODE_SKIP or (self.mode == MODE_DEFER and not last):
            step.selection = "none"
        elif self.selector and self.selector != ALL:
            step.selection, args = f"selector {self.selector}", [self.selector]
        elif self.mode == MODE_DEFER or self.selector == ALL:
            step.selection, args = "full suite", []
        else:
            if self.graph is None:
                self.graph = impact.ImportGraph.of(self.tree)
            selected = self.graph.impacted(list(patch.files))
            if selected:
                step.selection = f"impacted: {len(selected)} test module(s)"
                args = [impact.selector_regex(selected)]
            else:
                step.selection = "none (no impacted tests)"
        if args is not None:
            self._run_and_check(step, args, version, log)
        step.seconds = time.monotonic() - started
        if last and self.mode == MODE_EACH and self.selector is None:
            final = StepResult(self.result.name, END_OF_SERIES, True, selection="full suite")
            self.result.steps.append(final)
            started = time.monotonic()
            self._run_and_check(final, [], version, log)
            final.seconds = time.monotonic() - started

    def _run_and_check(self, step: StepResult, args: list[str], version: str, log: TextIO) -> None:
        spec = self.spec(version)
        try:
            counts = self.run_tests(spec, args, log)
        except TestEnvironmentError as error:
            step.error = error.message
            raise
        step.tests = counts
        if counts.failures:
            shown = ", ".join(counts.failures[:10]) + (" ..." if len(counts.failures) > 10 else "")
            raise TestsFailedError(
                f"{self.result.name} ({self.at_ref}): after {step.patch} ({step.selection}), "
                f"{counts.failed} test(s) failed: {shown}",
                hint=f"the tree is kept at {self.result.tree}, the log at {self.result.log}; "
                     f"rerun one test with: cd {self.result.tree} && stestr run <test id>",
            )


def _first_detail(message: str) -> str:
    lines = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    return lines[0] if lines else message


# --- the command -------------------------------------------------------------------------------


def select_series(project: Project, releases: list[str], components: list[str]) -> list[tuple[str, str]]:
    """The (release, component) series to run; a component no selected release knows is an error."""
    chosen = all_series(project, releases or None)
    known = {c for r in (releases or project.releases) for c in project.release(r).refs}
    for component in components:
        if component not in known:
            raise UnknownComponentError(f"unknown component {component!r}",
                                        hint=f"components with a ref: {', '.join(sorted(known))}")
    return [(r, c) for r, c in chosen if not components or c in components]


def testapply(project: Project, releases: list[str], components: list[str], mode: str = MODE_EACH,
              selector: str | None = None, jobs: int = 1, keep_going: bool = False) -> Report:
    chosen = select_series(project, releases, components)
    layout = project.layout
    layout.testapply_root().mkdir(parents=True, exist_ok=True)
    for release in sorted({r for r, _ in chosen}):
        with locks.hold(layout.lock(release), f"the work directory of {release}"):
            constraints_stage.build(project, release)

    def step(release: str, component: str) -> Callable[[dict[str, Any]], SeriesResult]:
        def run(_: dict[str, Any]) -> SeriesResult:
            runner = SeriesRunner(project, release, component, mode, selector)
            console.note(f"testapply {runner.result.name}: started (log {runner.result.log})")
            result = runner.execute()
            applied = sum(1 for s in result.steps if s.applied and s.patch != END_OF_SERIES)
            status = "ok" if result.error is None else f"FAILED ({type(result.error).__name__})"
            console.note(f"testapply {runner.result.name}: {status}, {applied} patch(es) applied")
            if result.error is not None and not keep_going:
                raise _SeriesFailed(result)
            return result
        return run

    steps = [runner.Step(f"{c}/{r}", step(r, c)) for r, c in chosen]
    outcome = runner.run(steps, jobs, keep_going)
    results = []
    for r, c in chosen:
        name = f"{c}/{r}"
        failure = outcome.failures.get(name)
        if name in outcome.results:
            results.append(outcome.results[name])
        elif isinstance(failure, _SeriesFailed):
            results.append(failure.result)
        elif failure is not None:
            raise failure
    report = Report(results)
    write_junit(layout.testapply_root() / "junit.xml", report)
    return report


class _SeriesFailed(Exception):
    """A failed series, carried through the runner so that it stops the others (without --keep-going)."""

    def __init__(self, result: SeriesResult) -> None:
        super().__init__(result.name)
        self.result = result


