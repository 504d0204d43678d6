"""Time a build on engine A that fills the shared layer cache, then the same build on an empty engine B.

Engine A is the machine's own engine; B is a second dockerd started here
(TLS on loopback, its own data root, no bridge), empty; the cache is a
loopback docker-registry.  Both runs build the shipped configuration in
fresh work directories sharing one package cache (sources are fetched and
patched before the clock starts).  Prints, for the service:
A's build with its pushes to the cache, B's build of the same inputs (all
pulled, no build step), B's build after one service patch changed (the
service's own stages rebuilt on B, everything below pulled), each with its
ratio to A's, and what was pulled and pushed.
Run as root: python bench/cache_bench.py [--service keystone] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from changes import change_code  # noqa: E402 - after sys.path.insert of the repository root
from conftest import serve_registry  # noqa: E402 - after sys.path.insert of the repository root
from second_engine import second_engine  # noqa: E402 - after sys.path.insert of the repository root

from pipeline import build  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.core.releases import load_project  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.core.settings import Settings  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.patches import series  # noqa: E402 - after sys.path.insert of the repository root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", default="2025.2")
    parser.add_argument("--service", default="keystone")
    parser.add_argument("--cache-dir", default="", help="package cache to reuse (default: a fresh one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cache-bench-") as scratch, \
            serve_registry(Path(scratch) / "registry") as registry, second_engine() as engine_b:
        base = Path(scratch)
        for name in ("releases", "patches", "overrides"):
            shutil.copytree(ROOT / name, base / name)
        figures: list[tuple[str, float, str]] = []

        def measure(label: str, workdir: str, environ: dict[str, str]) -> None:
            settings = Settings.from_mapping(
                {"root": str(base), "workdir": workdir, "cache_dir": args.cache_dir or str(base / "cache"),
                 "cache_registry": registry},
                environ={**os.environ, **environ})
            project = load_project(settings)
            # Not timed: sources and patched trees (a runner's package and git caches are warm; its engine is not).
            series.patch(project, args.release, (), 4)
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                report = build.build(project, args.release, [args.service])
            if report.first_error() is not None:
                raise report.first_error()
            result = report.image(args.service)
            figures.append((label, time.perf_counter() - started, result.action))

        measure("engine A: build, push to the cache", "build-a", {})
        measure("engine B (empty): same inputs", "build-b", engine_b.env())
        change_code(base / "patches", args.service, args.release)
        measure("engine B: one service patch changed", "build-b", engine_b.env())
        stored = sum(p.stat().st_size for p in (base / "registry").rglob("*") if p.is_file())

    first = figures[0][1]
    print(f"{args.service} ({args.release}); layer cache {stored / 1e6:.0f} MB in the registry")
    width = max(len(f[0]) for f in figures)
    for label, seconds, action in figures:
        print(f"  {label.ljust(width)}  {seconds:7.2f} s  {seconds / first:6.1%} of A  ({action})")


if __name__ == "__main__":
    main()
