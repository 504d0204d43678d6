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

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.constraints import effective as constraints_stage
from pipeline.core import console, locks, runner
from pipeline.core.errors import (
    ConfigError,
    PatchApplyError,
    PipelineError,
    TestEnvironmentError,
    TestsFailedError,
    UnknownComponentError,
)
from pipeline.core.files import read_json, write_atomic, write_json
from pipeline.core.git import text
from pipeline.core.redact import redact
from pipeline.core.releases import Project
from pipeline.core.settings import PROJECT_ROOT
from pipeline.core.stamps import Stamp
from pipeline.patches.series import (
    AppliedPatch,
    all_series,
    apply_series,
    clone_pristine,
    discover,
)
from pipeline.sources.fetch import fetch_component
from pipeline.testing import impact

SPEC_ENV = "OPENSTACK_PATCHES_TESTAPPLY_SPEC"
NOX_SESSION = "upstream-tests"
DEFAULT_TEST_COMMAND = "stestr run"
ALL = "all"
BANNER = "All patches applied correctly."
END_OF_SERIES = "(end of series)"
MODE_EACH, MODE_DEFER, MODE_SKIP = "each", "defer", "skip"

# Runs with the test venv's Python, where python-subunit and testtools are installed:
# stestr's subunit v2 stream to one JSON record per test.
SUBUNIT_SCRIPT = r"""
import json, sys
import subunit, testtools
tests = {}
def on_test(test):
    start, stop = test["timestamps"]
    seconds = (stop - start).total_seconds() if start and stop else 0.0
    details = {}
    for key, value in test["details"].items():
        if key in ("traceback", "reason"):
            try:
                details[key] = value.as_text()[-4000:]
            except Exception:
                pass
    tests[test["id"]] = {"id": test["id"], "status": test["status"], "seconds": seconds, "details": details}
stream = subunit.ByteStreamToStreamResult(sys.stdin.buffer, non_subunit_name="stdout")
result = testtools.StreamToDict(on_test)
result.startTestRun()
stream.run(result)
result.stopTestRun()
json.dump(list(tests.values()), sys.stdout)
"""


# --- the nox side ------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionSpec:
    """What the nox session of one (release, component) installs."""

    release: str
    component: str
    tree: str
    constraints: str
    requirement_files: tuple[str, ...]
    requirements: tuple[str, ...]  # literal deps of tox.ini and the requirements of the extras it asks for
    extras: tuple[str, ...]  # the tree's extras (``.[ldap]`` in tox.ini)
    version: str  # PBR_VERSION for the tree's own install, and only that install

    @property
    def editable(self) -> str:
        return f"{self.tree}[{','.join(self.extras)}]" if self.extras else self.tree


def nox_session_name(release: str, component: str) -> str:
    return f"{NOX_SESSION}(release='{release}', component='{component}')"


def nox_matrix() -> list[tuple[str, str]]:
    """(release, component) pairs for the nox parametrisation: the spec testapply wrote, else every series."""
    spec = os.environ.get(SPEC_ENV)
    if spec:
        data = json.loads(Path(spec).read_text())
        return [(data["release"], data["component"])]
    try:
        from pipeline.core.releases import load_project
        from pipeline.core.settings import Settings

        return all_series(load_project(Settings.from_mapping({})))
    except PipelineError:
        return []


def session_spec(release: str, component: str) -> SessionSpec:
    spec = os.environ.get(SPEC_ENV)
    if not spec:
        raise SystemExit("this session is driven by `invoke testapply`, which writes its spec file")
    data = json.loads(Path(spec).read_text())
    if (data["release"], data["component"]) != (release, component):
        raise SystemExit(f"the spec {spec} is for {data['component']}/{data['release']}")
    return SessionSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# --- the upstream test environment ---------------------------------------------------------


@dataclass(frozen=True)
class ToxEnv:
    files: tuple[str, ...]
    literal: tuple[str, ...]
    extras: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def tox_test_env(tree: Path) -> ToxEnv:
    """Requirement files, literal requirements, the tree's extras and environment of upstream's ``[testenv]``.

    Constraints lines are dropped: the release's effective constraints apply.
    Without a tox.ini, requirements.txt and test-requirements.txt are used.
    """
    tox_ini = tree / "tox.ini"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(tox_ini)
    except configparser.Error as exc:
        raise ConfigError(f"{tox_ini}: cannot be parsed: {exc}") from None
    if not parser.has_option("testenv", "deps"):
        files = tuple(name for name in ("requirements.txt", "test-requirements.txt") if (tree / name).exists())
        return ToxEnv(files, (), (), ())
    files, literal, extras = [], [], []
    for line in parser.get("testenv", "deps").splitlines():
        line = _requirement(line)
        if not line or line.startswith("-c"):
            continue
        if m := re.match(r"^-r\s*\{toxinidir\}/(.+)$", line):
            if (tree / m.group(1)).exists():
                files.append(m.group(1))
        elif m := re.match(r"^(?:\.|\{toxinidir\})(?:\[([^\]]*)\])?$", line):
            extras += [e.strip() for e in (m.group(1) or "").split(",") if e.strip()]
        elif "{" not in line and not line.startswith("-"):
            literal.append(line)
    if parser.has_option("testenv", "extras"):
        extras += [e.strip() for e in re.split(r"[\s,]+", parser.get("testenv", "extras")) if e.strip()]
    env = {}
    if parser.has_option("testenv", "setenv"):
        for line in parser.get("testenv", "setenv").splitlines():
            key, sep, value = line.strip().partition("=")
            value = re.sub(r"\{env:[^:}]+:([^}]*)\}", r"\1", value.strip())
            if sep and key.strip() and "{" not in value:
                env[key.strip()] = value
    return ToxEnv(tuple(files), tuple(literal), tuple(dict.fromkeys(extras)), tuple(sorted(env.items())))


def _requirement(line: str) -> str:
    """A requirement line without its comment (``python-ldap>=3.0.0 # PSF``)."""
    return line.split(" #", 1)[0].split("\t#", 1)[0].strip() if not line.strip().startswith("#") else ""


def extras_requirements(tree: Path, extras: tuple[str, ...]) -> list[str]:
    """Requirements of the tree's extras: pbr's ``setup.cfg [extras]`` or PEP 621 optional dependencies."""
    found: list[str] = []
    setup_cfg = tree / "setup.cfg"
    if setup_cfg.exists():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(setup_cfg)
        except configparser.Error:
            pass
        for extra in extras:
            for section in ("extras", "options.extras_require"):
                if parser.has_option(section, extra):
                    found += [_requirement(l) for l in parser.get(section, extra).splitlines() if _requirement(l)]
    pyproject = tree / "pyproject.toml"
    if pyproject.exists():
        try:
            optional = tomllib.loads(pyproject.read_text()).get("project", {}).get("optional-dependencies", {})
        except tomllib.TOMLDecodeError:
            optional = {}
        for extra in extras:
            found += [_requirement(r) for r in optional.get(extra, []) if _requirement(r)]
    return found


# --- results ---------------------------------------------------------------------------


@dataclass
class TestCounts:
    __test__ = False

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    xfail: int = 0
    cases: list[dict] = field(default_factory=list)  # id, status, seconds, details

    @property
    def failures(self) -> list[str]:
        return sorted(c["id"] for c in self.cases if c["status"] in ("fail", "uxsuccess"))

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped + self.xfail


def counts_of(cases: list[dict]) -> TestCounts:
    counts = TestCounts(cases=[c for c in cases if c["status"] not in ("exists", "inprogress")])
    for case in counts.cases:
        status = case["status"]
        if status == "success":
            counts.passed += 1
        elif status in ("fail", "uxsuccess"):
            counts.failed += 1
        elif status == "skip":
            counts.skipped += 1
        elif status == "xfail":
            counts.xfail += 1
    return counts


@dataclass
class StepResult:
    series: str
    patch: str
    applied: bool
    detail: str = ""  # the failing hunk
    selection: str = ""  # none | impacted: ... | selector ... | full suite
    tests: TestCounts | None = None
    seconds: float = 0.0
    error: str = ""  # the environment or the runner failed: no results


@dataclass
class SeriesResult:
    release: str
    component: str
    steps: list[StepResult] = field(default_factory=list)
    error: PipelineError | None = None
    tree: str = ""
    log: str = ""

    @property
    def name(self) -> str:
        return f"{self.component}/{self.release}"


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

    def ensure_venv(self, spec: SessionSpec, log) -> Path:
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

    def _nox(self, spec: SessionSpec, log, venvs: Path) -> Path:
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
        for line in proc.stdout:
            line = redact(console.strip_ansi(line))
            log.write(line)
            tail = (tail + [line.rstrip()])[-12:]
            if line.strip():
                progress.update(line.strip()[:90])
        proc.wait()
        progress.done()
        if proc.returncode != 0 or not location.exists():
            detail = "\n    ".join(l for l in tail if l.strip())
            raise TestEnvironmentError(
                f"{self.result.name}: the test environment could not be installed (nox exit {proc.returncode}):\n    {detail}",
                hint=f"full log: {self.log_path}; the requirements come from upstream's tox.ini under the release's "
                     "effective constraints (scripts/setup installs the host packages suites build against)",
            )
        return Path(location.read_text().strip())

    # --- tests --------------------------------------------------------------------------
    def run_tests(self, spec: SessionSpec, args: list[str], log) -> TestCounts:
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
                    text("checkout", "--quiet", "-f", "-B", "testapply", patch.commit, cwd=self.tree)
                    self.test_after(step, patch, len(applied) == len(patches), source.version, log)

                try:
                    apply_series(self.project, component, source, patches, self.tree, source.commit, commit=True,
                                 on_applied=after_apply)
                except PatchApplyError as error:
                    failing = patches[len(applied)].name
                    self.result.steps.append(StepResult(self.result.name, failing, False,
                                                        detail=_first_detail(error.message)))
                    raise PatchApplyError(f"{self.result.name}: {error.message}",
                                          hint=f"{error.hint}; the tree is kept at {self.result.tree}, the log at {self.result.log}") from None
            except PipelineError as error:
                self.result.error = error
                log.write(f"ERROR: {error}\n")
                if self.result.steps and not self.result.steps[-1].error and isinstance(error, TestEnvironmentError):
                    self.result.steps[-1].error = error.message
        return self.result

    def test_after(self, step: StepResult, patch: AppliedPatch, last: bool, version: str, log) -> None:
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

    def _run_and_check(self, step: StepResult, args: list[str], version: str, log) -> None:
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


@dataclass
class Report:
    series: list[SeriesResult]

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.series)

    @property
    def exit_code(self) -> int:
        errors = [s.error for s in self.series if s.error is not None]
        for kind in (ConfigError, PatchApplyError, TestEnvironmentError, TestsFailedError):
            for error in errors:
                if isinstance(error, kind):
                    return error.exit_code
        return errors[0].exit_code if errors else 0


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

    def step(release: str, component: str):
        def run(_: dict) -> SeriesResult:
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
        if name in outcome.results:
            results.append(outcome.results[name])
        elif isinstance(outcome.failures.get(name), _SeriesFailed):
            results.append(outcome.failures[name].result)
        elif name in outcome.failures:
            raise outcome.failures[name]
    report = Report(results)
    write_junit(layout.testapply_root() / "junit.xml", report)
    return report


class _SeriesFailed(Exception):
    """A failed series, carried through the runner so that it stops the others (without --keep-going)."""

    def __init__(self, result: SeriesResult) -> None:
        super().__init__(result.name)
        self.result = result


def _tests_text(step: StepResult) -> str:
    if step.error:
        return f"ERROR: {step.error.splitlines()[0][:80]}"
    if step.tests is None:
        return "-"
    t = step.tests
    text_ = f"{t.passed} passed, {t.failed} failed, {t.skipped} skipped"
    return text_ + (f", {t.xfail} expected failures" if t.xfail else "")


def table_rows(report: Report) -> list[tuple[str, ...]]:
    rows = []
    for series in report.series:
        for step in series.steps:
            applied = "-" if step.patch == END_OF_SERIES else ("applied" if step.applied else f"FAILED: {step.detail}")
            selection = step.selection or "-"
            if step.error and step.tests is None:
                selection += " (did not run)"
            rows.append((series.name, step.patch, applied, selection, _tests_text(step), f"{step.seconds:.1f}s"))
    return rows


def report_json(report: Report) -> list[dict]:
    return [{
        "release": s.release, "component": s.component, "ok": s.error is None,
        "error": str(s.error) if s.error else None, "tree": s.tree, "log": s.log,
        "steps": [{"patch": st.patch, "applied": st.applied, "detail": st.detail, "selection": st.selection,
                   "error": st.error or None, "seconds": round(st.seconds, 2),
                   "tests": None if st.tests is None else {"passed": st.tests.passed, "failed": st.tests.failed,
                                                           "skipped": st.tests.skipped, "xfail": st.tests.xfail,
                                                           "failures": st.tests.failures}}
                  for st in s.steps],
    } for s in report.series]


def write_junit(path: Path, report: Report) -> None:
    """One testsuite per series step: an apply case, every test with its real status, and environment errors."""
    suites = ET.Element("testsuites", name="testapply")
    for series in report.series:
        for step in series.steps:
            suite = ET.SubElement(suites, "testsuite", name=f"{series.name}/{step.patch}")
            if step.patch != END_OF_SERIES:
                case = ET.SubElement(suite, "testcase", classname=f"testapply.{series.name}", name=f"apply {step.patch}")
                if not step.applied:
                    ET.SubElement(case, "failure", message="patch does not apply").text = str(series.error)
            for test in (step.tests.cases if step.tests else []):
                classname, _, name = test["id"].rpartition(".")
                case = ET.SubElement(suite, "testcase", classname=classname or series.name, name=name or test["id"],
                                     time=f"{test['seconds']:.3f}")
                details = test.get("details", {})
                if test["status"] in ("fail", "uxsuccess"):
                    message = "unexpected success" if test["status"] == "uxsuccess" else "failed"
                    ET.SubElement(case, "failure", message=message).text = details.get("traceback", "")
                elif test["status"] == "skip":
                    ET.SubElement(case, "skipped", message=details.get("reason", "")[:500])
                elif test["status"] == "xfail":
                    ET.SubElement(case, "properties").append(ET.Element("property", name="outcome", value="expected failure"))
            if step.error:
                case = ET.SubElement(suite, "testcase", classname=f"testapply.{series.name}", name="test environment")
                ET.SubElement(case, "error", message=step.error.splitlines()[0][:500]).text = step.error
            cases = suite.findall("testcase")
            suite.set("tests", str(len(cases)))
            suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
            suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
            suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
            suite.set("time", f"{step.seconds:.3f}")
    ET.indent(suites)
    write_atomic(path, ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")
