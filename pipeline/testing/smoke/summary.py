"""What ``invoke smoke`` prints: the report as JSON; a table of steps per service, then one summary line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core import console
from pipeline.core.releases import Project

if TYPE_CHECKING:  # run imports the engine and the control plane: the printer needs only the type
    from pipeline.testing.smoke.run import SmokeReport

_COLUMNS = (console.Column("step"), console.Column("result"), console.Column("time", lambda r: f"{r['seconds']:.1f}s"),
            console.Column("detail", lambda r: r["detail"].splitlines()[0][:90] if r["detail"] else ""))


def as_report(project: Project, release: str, report: SmokeReport) -> console.Report:
    parts: list[console.Part] = []
    for name in dict.fromkeys(r.service for r in report.rows):
        rows = [{"step": r.step, "result": r.result, "seconds": r.seconds, "detail": r.detail}
                for r in report.rows if r.service == name]
        parts += [console.Table(_COLUMNS, rows, title=name), ""]
    passed = sum(r.result == "ok" for r in report.rows)
    parts.append(f"smoke {release}: {passed} of {len(report.rows)} ok in {report.seconds:.0f}s; "
                 f"JUnit: {project.layout.rel(project.layout.smoke_junit(release))}"
                 + (f"; container logs: {report.logs}" if report.logs else ""))
    return console.Report(report.to_json(), parts)
