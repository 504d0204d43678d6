"""Time invoke export on the shipped 2025.2 configuration (real PyPI sdists, the shipped series).

Prints: export of every component with the trees already prepared (the
archives written), the same with --jobs 2, a no-change rerun, and a rerun after the export folder
and stamps were removed (the archives written again), with the archives'
total size and whether the second writing gave the same bytes.
Uses the default cache (~/.cache/openstack-patches), so sdists are
downloaded once. Run: python bench/export_bench.py
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core import locks  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.core.releases import load_project  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.core.settings import PROJECT_ROOT, Settings  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.patches import (  # noqa: E402 - after sys.path.insert of the repository root
    export,
    series,
)


def timed(func):
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        result = func()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", default="2025.2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="export-bench-") as scratch:
        settings = Settings.from_mapping({"workdir": str(Path(scratch) / "build")}, root=PROJECT_ROOT)
        project = load_project(settings)

        def prepare():
            with locks.hold(project.layout.lock(args.release), "bench"):
                series.patch(project, args.release, (), 4)

        _, prepared_s = timed(prepare)
        first, first_s = timed(lambda: export.export(project, args.release))
        shutil.rmtree(project.layout.export_dir(args.release))
        shutil.rmtree(project.layout.workdir / ".stamps" / "export")
        parallel, parallel_s = timed(lambda: export.export(project, args.release, jobs=2))
        again, again_s = timed(lambda: export.export(project, args.release))
        assert [e.sha256 for e in parallel] == [e.sha256 for e in first]
        digests = {e.path.name: hashlib.sha256(e.path.read_bytes()).hexdigest() for e in first}
        shutil.rmtree(project.layout.export_dir(args.release))
        shutil.rmtree(project.layout.workdir / ".stamps" / "export")
        rewritten, rewritten_s = timed(lambda: export.export(project, args.release))
        same = all(hashlib.sha256(e.path.read_bytes()).hexdigest() == digests[e.path.name] for e in rewritten)
        size = sum(e.path.stat().st_size for e in rewritten)
    print(f"release {args.release}: {len(first)} components, archives {size / 1e6:.1f} MB in total")
    print(f"  fetch + patch (warm cache)              {prepared_s:6.2f} s")
    print(f"  export, archives written                {first_s:6.2f} s")
    print(f"  export --jobs 2, archives written       {parallel_s:6.2f} s  ({first_s / parallel_s:.1f}x)")
    print(f"  export, nothing changed                 {again_s:6.2f} s  ({first_s / again_s:.0f}x faster)")
    print(f"  export, archives written again          {rewritten_s:6.2f} s  same bytes: {same}")
    assert all(e.action == "up to date" for e in again)


if __name__ == "__main__":
    main()
