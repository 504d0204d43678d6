"""Time testapply on a real series: impacted-test selection vs the full suite after each patch.

Series: oslo.config 10.0.0 (sdist from PyPI) with the two genuine upstream
fixes of tests/data/oslo.config plus a third patch touching generator.py.
Prints per-patch test time for the default selection (impacted tests after
each patch, the full suite once at the end) and for ``--tests all``, and the
ratio.  Run: python bench/testapply_bench.py
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import sources, testapply  # noqa: E402
from pipeline.config import Settings, load_project  # noqa: E402

SHARED = ROOT.parent / "shared" / "upper-constraints"


def third_patch(tree: Path) -> str:
    """A real format-patch against the pristine tree: a comment in generator.py."""
    work = Path(tempfile.mkdtemp()) / "clone"
    subprocess.run(["git", "clone", "-q", str(tree), str(work)], check=True)
    generator = work / "oslo_config" / "generator.py"
    generator.write_text(generator.read_text().replace("import logging\n", "import logging  # noqa\n", 1))
    env = ["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", *env, "commit", "-qam", "Mark the logging import"], cwd=work, check=True)
    return subprocess.run(["git", "format-patch", "-1", "--stdout"], cwd=work, check=True, capture_output=True, text=True).stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="testapply-bench-") as scratch:
        base = Path(scratch)
        (base / "releases" / "2025.2").mkdir(parents=True)
        (base / "releases" / "2025.2" / "source-refs.yaml").write_text('oslo.config: "10.0.0"\n')
        (base / "releases" / "2025.2" / "release.yaml").write_text("services: []\n")
        series = base / "patches" / "oslo.config" / "2025.2"
        series.mkdir(parents=True)
        for patch in sorted((ROOT / "tests" / "data" / "oslo.config").glob("*.patch")):
            shutil.copy(patch, series)
        settings = Settings.from_mapping({"root": str(base), "workdir": "build", "cache_dir": str(ROOT / ".cache" / "bench"),
                                          "constraints_url": f"file://{SHARED}/{{release}}.txt"})
        project = load_project(settings)
        with contextlib.redirect_stdout(io.StringIO()):
            record = sources.fetch(project, "2025.2", ["oslo.config"])["oslo.config"]
        (series / "0003-Mark-the-logging-import.patch").write_text(third_patch(Path(record.tree)))

        def run(selector: str | None) -> tuple[float, list[testapply.StepResult]]:
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                report = testapply.testapply(load_project(settings), ["2025.2"], [], selector=selector)
            assert report.ok, [str(s.error) for s in report.series]
            return time.perf_counter() - started, report.series[0].steps

        run(None)  # warm-up: venv creation and installs are not what is measured
        impacted_total, impacted = run(None)
        full_total, full = run(testapply.ALL)

    print("oslo.config 10.0.0, 3 patches (2025.2)")
    print(f"  {'patch':<58} {'impacted':>16} {'full suite':>16}")
    for a, b in zip(impacted, full + [None] * (len(impacted) - len(full))):
        right = f"{b.seconds:6.1f}s ({b.tests.passed:4d})" if b else ""
        print(f"  {a.patch:<58} {a.seconds:6.1f}s ({a.tests.passed if a.tests else 0:4d}) {right:>16}")
    per_patch_impacted = sum(s.seconds for s in impacted if s.patch != "(end of series)") / 3
    per_patch_full = sum(s.seconds for s in full) / 3
    print(f"  per-patch test time: impacted {per_patch_impacted:.1f}s, full suite {per_patch_full:.1f}s, "
          f"ratio {per_patch_impacted / per_patch_full:.2f}")
    print(f"  whole run: impacted + final full suite {impacted_total:.1f}s, full suite after each patch {full_total:.1f}s, "
          f"ratio {impacted_total / full_total:.2f}")


if __name__ == "__main__":
    main()
