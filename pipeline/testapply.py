"""testapply: apply each patch series one patch at a time and run the upstream unit tests.

Owns the testing trees at ``<workdir>/testapply/<release>/<component>/tree``
(recreated on every run, kept after a failure for inspection), the choice of
tests after each patch (impacted tests, a selector, or the full suite), the
nox-managed virtual environment per (release, component) and when it must be
reinstalled, parsing of stestr results, the result table, the JUnit XML at
``<workdir>/testapply/junit.xml`` and the exit code.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from . import console
from . import constraints as constraints_stage
from .config import PROJECT_ROOT, Project
from .errors import (
    ConfigError,
    PatchApplyError,
    PipelineError,
    TestEnvironmentError,
    TestsFailedError,
    UnknownComponentError,
)
from .patches import AppliedPatch, all_series, apply_series, discover, series_dir
from .git import git
from .sources import fetch_component, package_version
from .stamps import hash_inputs, read_json, write_atomic, write_json

SPECS_ENV = "OPENSTACK_PATCHES_TESTAPPLY_SPECS"
VENV_RECORD_ENV = "OPENSTACK_PATCHES_TESTAPPLY_VENV"
NOX_SESSION = "upstream-tests"
DEFAULT_TEST_COMMAND = "stestr run"
ALL = "all"
BANNER = "All patches applied correctly."
STESTR_LINE = re.compile(r"^\{\d+\} (\S+) \[([\d.]+)s\] \.\.\. (ok|FAILED|SKIPPED)(?::?\s*(.*))?$")

MODE_EACH, MODE_DEFER, MODE_SKIP = "each", "defer", "skip"


# --- the nox side ------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionSpec:
    """What the nox session of one (release, component) installs and runs."""

    release: str
    component: str
    tree: str
    constraints: str
    requirements: tuple[str, ...]
    version: str
    command: tuple[str, ...]
    output: str  # where the session writes the test command's output
    env: tuple[tuple[str, str], ...] = ()


def nox_session_name(release: str, component: str) -> str:
    return f"{NOX_SESSION}(release='{release}', component='{component}')"


def nox_matrix() -> list[tuple[str, str]]:
    """(release, component) pairs for the nox parametrisation.

    When invoked by ``invoke testapply`` the pairs come from its spec file;
    otherwise from every series in the repository, so ``nox -l`` lists them.
    """
    specs = os.environ.get(SPECS_ENV)
    if specs:
        return [(s["release"], s["component"]) for s in json.loads(Path(specs).read_text())]
    try:
        from .config import Settings, load_project

        return all_series(load_project(Settings.from_mapping({})))
    except PipelineError:
        return []


def session_spec(release: str, component: str) -> SessionSpec:
    specs = os.environ.get(SPECS_ENV)
    if not specs:
        raise SystemExit("this session is driven by `invoke testapply`, which writes its spec file")
    for entry in json.loads(Path(specs).read_text()):
        if (entry["release"], entry["component"]) == (release, component):
            return SessionSpec(**{**entry, "requirements": tuple(entry["requirements"]), "command": tuple(entry["command"]),
                                  "env": tuple(tuple(pair) for pair in entry["env"])})
    raise SystemExit(f"no spec for {release}/{component} in {specs}")


# --- the upstream test environment ---------------------------------------------------------


def tox_test_env(tree: Path) -> tuple[list[str], list[str], dict[str, str]]:
    """(requirement files, literal requirements, environment) of upstream's ``[testenv]``.

    The upstream tox.ini says what the unit tests need (often more than
    test-requirements.txt, e.g. doc/requirements.txt); without one,
    requirements.txt and test-requirements.txt are used.  Constraints lines
    are dropped: the release's effective constraints apply instead.
    """
    tox_ini = tree / "tox.ini"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(tox_ini)
    except configparser.Error as exc:
        raise ConfigError(f"{tox_ini}: cannot be parsed: {exc}") from None
    if not parser.has_option("testenv", "deps"):
        files = [name for name in ("requirements.txt", "test-requirements.txt") if (tree / name).exists()]
        return files, [], {}
    files, literal = [], []
    for line in parser.get("testenv", "deps").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-c"):
            continue
        m = re.match(r"^-r\s*\{toxinidir\}/(.+)$", line)
        if m:
            if (tree / m.group(1)).exists():
                files.append(m.group(1))
        elif "{" not in line and not line.startswith("-"):
            literal.append(line)
    env = {}
    if parser.has_option("testenv", "setenv"):
        for line in parser.get("testenv", "setenv").splitlines():
            key, sep, value = line.strip().partition("=")
            value = re.sub(r"\{env:[^:}]+:([^}]*)\}", r"\1", value.strip())
            if sep and key.strip() and "{" not in value:
                env[key.strip()] = value
    return files, literal, env


# --- test selection and results (pure) -----------------------------------------------------


def test_modules(tree: Path) -> list[str]:
    """Dotted names of the test modules of a tree (``*/tests/**/test_*.py``)."""
    modules = []
    for path in tree.rglob("test_*.py"):
        rel = path.relative_to(tree)
        if "tests" in rel.parts[:-1] and ".git" not in rel.parts and not rel.parts[0].startswith("."):
            modules.append(".".join(rel.with_suffix("").parts))
    return sorted(modules)


def impacted_tests(changed: list[str], modules: list[str]) -> list[str]:
    """Test modules a patch makes relevant: the test modules it touches, and the
    test modules that mirror the source modules it touches (``pkg/sub/_mod.py``
    -> ``test_mod`` or ``test_sub`` in the same top-level package)."""
    selected: set[str] = set()
    for path in changed:
        pure = PurePosixPath(path)
        if pure.suffix != ".py":
            continue
        dotted = ".".join(pure.with_suffix("").parts)
        if dotted in modules:
            selected.add(dotted)
            continue
        names = {f"test_{pure.stem.lstrip('_')}", f"test_{pure.stem}"}
        if len(pure.parts) > 2:
            names.add(f"test_{pure.parts[-2].lstrip('_')}")
        top = pure.parts[0]
        selected.update(m for m in modules if m.split(".")[0] == top and m.rsplit(".", 1)[-1] in names)
    return sorted(selected)


def selector_regex(modules: list[str]) -> str:
    return "^(" + "|".join(re.escape(m) for m in modules) + r")\."


@dataclass
class TestCounts:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    cases: list[tuple[str, float, str]] = field(default_factory=list)  # id, seconds, ok|FAILED|SKIPPED


def parse_stestr(output: str) -> TestCounts:
    counts = TestCounts()
    for line in output.splitlines():
        m = STESTR_LINE.match(line.strip())
        if not m:
            continue
        test_id, seconds, status = m.group(1), float(m.group(2)), m.group(3)
        counts.cases.append((test_id, seconds, status))
        if status == "ok":
            counts.passed += 1
        elif status == "FAILED":
            counts.failed += 1
            counts.failures.append(test_id)
        else:
            counts.skipped += 1
    # Warnings on stderr can garble a per-test line; stestr's totals are authoritative.
    totals = {key.lower(): int(value) for key, value in re.findall(r"^ - (Passed|Skipped|Failed): (\d+)$", output, re.M)}
    if totals:
        counts.passed, counts.skipped, counts.failed = totals.get("passed", 0), totals.get("skipped", 0), totals.get("failed", 0)
    return counts


# --- running -------------------------------------------------------------------------------


@dataclass
class StepResult:
    series: str
    patch: str
    applied: bool
    detail: str = ""  # the failing hunk, or what was selected
    selection: str = ""  # none | impacted | selector | full
    tests: TestCounts | None = None
    seconds: float = 0.0
    test_error: str = ""  # the test command failed without test results


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

    def __init__(self, project: Project, release: str, component: str, mode: str, selector: str | None,
                 offline: bool, specs_file: Path) -> None:
        self.project, self.release, self.component = project, release, component
        self.mode, self.selector, self.offline = mode, selector, offline
        self.specs_file = specs_file
        self.base = project.settings.workdir / "testapply" / release / component
        self.tree = self.base / "tree"
        self.log_path = self.base / "testapply.log"
        self.result = SeriesResult(release, component, tree=str(self.tree), log=str(self.log_path))
        self.at_ref = ""

    # The spec is shared with nox through a file; each series owns one entry.
    def spec(self, version: str) -> SessionSpec:
        files, literal, env = tox_test_env(self.tree)
        requirements = [str(self.tree / name) for name in files]
        if literal:
            extra = self.base / "tox-deps.txt"
            extra.write_text("\n".join(literal) + "\n")
            requirements.append(str(extra))
        return SessionSpec(
            release=self.release, component=self.component, tree=str(self.tree),
            constraints=str(constraints_stage.effective_path(self.project, self.release)),
            requirements=tuple(requirements), version=version,
            command=tuple(_test_command(self.project, self.component)),
            output=str(self.base / "last-test-output.txt"), env=tuple(sorted(env.items())),
        )

    def ensure_venv(self, spec: SessionSpec, log) -> Path:
        """The nox-managed venv of this (release, component), (re)installed only when its inputs changed."""
        venvs = self.project.settings.cache_dir / "testapply-venvs"  # caches: they outlive a wiped work dir
        stamp_path = venvs / f"{self.release}-{self.component}.json"
        install_inputs = hash_inputs([Path(r).read_text() for r in spec.requirements] +
                                     [Path(spec.constraints).read_text(), spec.version, sys.version])
        stamp = read_json(stamp_path) or {}
        if stamp.get("inputs") == install_inputs and Path(stamp.get("venv", "/nonexistent"), "bin").is_dir():
            return Path(stamp["venv"])
        cmd = [sys.executable, "-m", "nox", "-f", str(PROJECT_ROOT / "noxfile.py"), "--envdir", str(venvs),
               "-s", nox_session_name(self.release, self.component), "--reuse-venv", "yes", "--install-only"]
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        location = self.base / "venv-location"
        location.unlink(missing_ok=True)
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT,
                              env={**os.environ, SPECS_ENV: str(self.specs_file), VENV_RECORD_ENV: str(location)})
        if proc.returncode != 0 or not location.exists():
            raise TestEnvironmentError(
                f"{self.result.name}: the test environment could not be installed (nox exit {proc.returncode})",
                hint=f"see {self.log_path}; the requirements come from upstream's tox.ini and the release's constraints",
            )
        venv = location.read_text().strip()
        write_json(stamp_path, {"inputs": install_inputs, "venv": venv})
        return Path(venv)

    def run_tests(self, spec: SessionSpec, args: list[str], log) -> tuple[TestCounts, str]:
        """Run the test command in the venv nox manages (nox itself only installs: it costs ~1 s a call)."""
        venv = self.ensure_venv(spec, log)
        env = {**os.environ, **dict(spec.env), "VIRTUAL_ENV": str(venv), "PBR_VERSION": spec.version,
               "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        command = [*spec.command, *args]
        log.write(f"\n$ cd {spec.tree} && {' '.join(command)}\n")
        log.flush()
        proc = subprocess.run(command, cwd=spec.tree, env=env, capture_output=True, text=True)
        output = proc.stdout + proc.stderr
        Path(spec.output).write_text(output)
        log.write(output)
        counts = parse_stestr(output)
        error = ""
        if proc.returncode != 0 and not counts.failures:
            error = f"the test command failed (exit {proc.returncode}) without test results; see {self.log_path}"
        return counts, error

    def execute(self) -> SeriesResult:
        patches, _ = discover(series_dir(self.project, self.component, self.release))
        component = self.project.component(self.release, self.component)
        if self.base.exists():
            shutil.rmtree(self.base)  # a rerun always starts clean
        self.base.mkdir(parents=True)
        with self.log_path.open("w") as log:
            try:
                source, _ = fetch_component(self.project, component, self.offline)
                self.at_ref = f"ref {source.ref} = {source.upstream_revision or source.commit}"
                version = package_version(source)
                modules: list[str] = []
                pending: list[AppliedPatch] = []

                def after_apply(applied: AppliedPatch) -> None:
                    step = StepResult(self.result.name, Path(applied.file).name, True)
                    self.result.steps.append(step)
                    pending.append(applied)
                    last = len(pending) == len(patches)
                    self.test_after(step, applied, last, version, modules, log)

                try:
                    apply_series(self.project, component, source, patches, self.tree, on_applied=after_apply)
                except PatchApplyError as error:
                    failing = patches[len(pending)].name
                    self.result.steps.append(StepResult(self.result.name, failing, False,
                                                        detail=_first_detail(error.message)))
                    raise PatchApplyError(
                        f"{self.result.name}: {error.message}",
                        hint=f"{error.hint}; the tree is kept at {self.tree}, the log at {self.log_path}",
                    ) from None
            except PipelineError as error:
                self.result.error = error
                log.write(f"ERROR: {error}\n")
        return self.result

    def test_after(self, step: StepResult, applied: AppliedPatch, last: bool, version: str,
                   modules: list[str], log) -> None:
        started = time.monotonic()
        args: list[str] = []
        if self.mode == MODE_SKIP or (self.mode == MODE_DEFER and not last):
            step.selection = "none"
        elif self.selector and self.selector != ALL:
            step.selection, args = f"selector {self.selector}", [self.selector]
        elif self.mode == MODE_DEFER or self.selector == ALL:
            step.selection = "full suite"
        else:
            if not modules:
                modules.extend(test_modules(self.tree))
            changed = git_changed(self.tree, applied.commit)
            impacted = impacted_tests(changed, modules)
            step.selection = f"impacted: {', '.join(m.rsplit('.', 1)[-1] for m in impacted)}" if impacted else "none (no impacted tests)"
            args = [selector_regex(impacted)] if impacted else []
            if impacted:
                self._run_and_check(step, args, version, log)
            step.seconds = time.monotonic() - started
            if last:
                final = StepResult(self.result.name, "(end of series)", True, selection="full suite")
                self.result.steps.append(final)
                self._run_and_check(final, [], version, log)
            return
        if step.selection != "none":
            self._run_and_check(step, args, version, log)
        step.seconds = time.monotonic() - started

    def _run_and_check(self, step: StepResult, args: list[str], version: str, log) -> None:
        started = time.monotonic()
        spec = self.spec(version)
        _register_spec(self.specs_file, spec)
        counts, error = self.run_tests(spec, args, log)
        step.tests, step.test_error = counts, error
        step.seconds = time.monotonic() - started
        if counts.failures or error:
            failures = sorted(counts.failures)  # stestr's workers finish in any order
            shown = ", ".join(failures[:10]) + (" ..." if len(failures) > 10 else "")
            what = f"{counts.failed} test(s) failed: {shown}" if counts.failures else error
            raise TestsFailedError(
                f"{self.result.name} ({self.at_ref}): after {step.patch} ({step.selection}), {what}",
                hint=f"the tree is kept at {self.tree}, the log at {self.log_path}; "
                     f"rerun one test with: cd {self.tree} && stestr run <test id>",
            )


_spec_lock = threading.Lock()


def _register_spec(specs_file: Path, spec: SessionSpec) -> None:
    with _spec_lock:
        entries = read_json(specs_file) or []
        entries = [e for e in entries if (e["release"], e["component"]) != (spec.release, spec.component)]
        entries.append(asdict(spec))
        write_json(specs_file, entries)


def _first_detail(message: str) -> str:
    lines = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    return lines[0] if lines else message


def git_changed(tree: Path, commit: str) -> list[str]:
    return [line for line in git("diff-tree", "--no-commit-id", "--name-only", "-r", "--root", commit, cwd=tree).splitlines() if line]


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
        for kind in (ConfigError, PatchApplyError, TestsFailedError):
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
            raise UnknownComponentError(
                f"unknown component {component!r}",
                hint=f"components with a ref: {', '.join(sorted(known))}",
            )
    return [(r, c) for r, c in chosen if not components or c in components]


def testapply(project: Project, releases: list[str], components: list[str], mode: str = MODE_EACH,
              selector: str | None = None, jobs: int = 1, keep_going: bool = False, offline: bool = False) -> Report:
    series = select_series(project, releases, components)
    root = project.settings.workdir / "testapply"
    root.mkdir(parents=True, exist_ok=True)
    specs_file = root / "nox-specs.json"
    write_json(specs_file, [])
    for release in sorted({r for r, _ in series}):
        constraints_stage.build(project, release)

    results: list[SeriesResult] = []
    stop = threading.Event()

    def run_one(pair: tuple[str, str]) -> SeriesResult | None:
        if stop.is_set():
            return None
        release, component = pair
        runner = SeriesRunner(project, release, component, mode, selector, offline, specs_file)
        console.info(f"testapply {component}/{release}: started (log {runner.log_path})")
        result = runner.execute()
        status = "ok" if result.error is None else f"FAILED ({type(result.error).__name__})"
        console.info(f"testapply {component}/{release}: {status}, {sum(1 for s in result.steps if s.applied and s.patch != '(end of series)')} patch(es) applied")
        if result.error is not None and not keep_going:
            stop.set()
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for result in pool.map(run_one, series):
            if result is not None:
                results.append(result)
    report = Report(results)
    write_junit(root / "junit.xml", report)
    return report


def table_rows(report: Report) -> list[tuple[str, ...]]:
    rows = []
    for series in report.series:
        for step in series.steps:
            applied = "applied" if step.applied else f"FAILED: {step.detail}"
            if step.patch == "(end of series)":
                applied = "-"
            if step.tests is not None:
                tests = f"{step.tests.passed} passed, {step.tests.failed} failed, {step.tests.skipped} skipped"
            else:
                tests = step.test_error or "-"
            rows.append((series.name, step.patch, applied, step.selection or "-", tests, f"{step.seconds:.1f}s"))
    return rows


def write_junit(path: Path, report: Report) -> None:
    suites = ET.Element("testsuites", name="testapply")
    for series in report.series:
        for step in series.steps:
            suite = ET.SubElement(suites, "testsuite", name=f"{series.name}/{step.patch}")
            apply_case = ET.SubElement(suite, "testcase", classname=f"testapply.{series.name}", name=f"apply {step.patch}")
            if not step.applied:
                ET.SubElement(apply_case, "failure", message="patch does not apply").text = str(series.error)
            counts = step.tests
            cases = counts.cases if counts else []
            for test_id, seconds, status in cases:
                classname, _, name = test_id.rpartition(".")
                case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")
                if status == "FAILED":
                    ET.SubElement(case, "failure", message="failed")
                elif status == "SKIPPED":
                    ET.SubElement(case, "skipped")
            if step.test_error:
                case = ET.SubElement(suite, "testcase", classname=f"testapply.{series.name}", name="test session")
                ET.SubElement(case, "error", message=step.test_error)
            suite.set("tests", str(len(suite)))
            suite.set("failures", str(sum(1 for c in suite if c.find("failure") is not None)))
            suite.set("errors", str(sum(1 for c in suite if c.find("error") is not None)))
            suite.set("skipped", str(sum(1 for c in suite if c.find("skipped") is not None)))
    ET.indent(suites)
    write_atomic(path, ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")
