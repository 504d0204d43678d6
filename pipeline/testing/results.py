"""What a testapply run found, exactly: stestr's subunit stream per test, the steps and series, the table, JSON and JUnit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core import console
from pipeline.core.errors import (
    ConfigError,
    PatchApplyError,
    PipelineError,
    TestEnvironmentError,
    TestsFailedError,
)
from pipeline.core.files import write_atomic

END_OF_SERIES = "(end of series)"


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


@dataclass
class TestCounts:
    __test__ = False

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    xfail: int = 0
    cases: list[dict[str, Any]] = field(default_factory=list)  # id, status, seconds, details

    @property
    def failures(self) -> list[str]:
        return sorted(c["id"] for c in self.cases if c["status"] in ("fail", "uxsuccess"))

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped + self.xfail


def counts_of(cases: list[dict[str, Any]]) -> TestCounts:
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


def _tests_text(step: StepResult) -> str:
    if step.error:
        return f"ERROR: {step.error.splitlines()[0][:80]}"
    if step.tests is None:
        return "-"
    t = step.tests
    text_ = f"{t.passed} passed, {t.failed} failed, {t.skipped} skipped"
    return text_ + (f", {t.xfail} expected failures" if t.xfail else "")


TABLE_HEADERS = ("series", "patch", "applied", "tests run", "result", "time")


def as_report(report: Report) -> console.Report:
    """What ``invoke testapply`` prints: every series and step as JSON; a row per step in the table."""
    rows = [dict(zip(TABLE_HEADERS, row, strict=True)) for row in table_rows(report)]
    return console.Report(report_json(report), [console.Table([console.Column(h) for h in TABLE_HEADERS], rows,
                                                              empty="no patch series")])


def table_rows(report: Report) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for series in report.series:
        for step in series.steps:
            applied = "-" if step.patch == END_OF_SERIES else ("applied" if step.applied else f"FAILED: {step.detail}")
            selection = step.selection or "-"
            if step.error and step.tests is None:
                selection += " (did not run)"
            rows.append((series.name, step.patch, applied, selection, _tests_text(step), f"{step.seconds:.1f}s"))
    return rows


def report_json(report: Report) -> list[dict[str, Any]]:
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
