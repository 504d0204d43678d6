"""Time the patch stage on the shipped 2025.2 series (real PyPI sdists).

Prints: cold patch (empty work dir and cache: download + unpack + apply),
patch with a warm cache (empty work dir), a no-change rerun, one changed
patch, and patches.check.  Run: python bench/patch_bench.py [--components ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import patches  # noqa: E402
from pipeline.config import Settings, load_project  # noqa: E402


def timed(label: str, func, results: list) -> None:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        func()
    results.append((label, time.perf_counter() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", default="2025.2")
    parser.add_argument("--components", nargs="+", default=["nova", "keystone", "oslo.messaging"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="patch-bench-") as scratch:
        base = Path(scratch)
        shutil.copytree(ROOT / "releases", base / "releases")
        shutil.copytree(ROOT / "patches", base / "patches")
        settings = Settings.from_mapping({"root": str(base), "workdir": "build", "cache_dir": "cache"})
        project = load_project(settings)
        run = lambda: patches.patch(project, args.release, args.components)  # noqa: E731
        results: list[tuple[str, float]] = []
        timed("cold patch (empty cache, downloads sdists)", run, results)
        shutil.rmtree(base / "build")
        timed("patch, warm cache, empty work dir", run, results)
        timed("no-change rerun", run, results)
        victim = sorted((base / "patches" / args.components[-1] / args.release).glob("*.patch"))[0]
        victim.write_text(re.sub(r"^(Subject: (?:\[PATCH[^\]]*\] )?)", r"\1(reworded) ", victim.read_text(), count=1, flags=re.M))
        project = load_project(settings)
        timed(f"rerun after rewording {victim.name}", run, results)
        timed("patches.check (all series)", lambda: patches.check(project, [args.release]), results)

    print(f"release {args.release}, components: {', '.join(args.components)}")
    width = max(len(label) for label, _ in results)
    for label, seconds in results:
        print(f"  {label.ljust(width)}  {seconds:7.2f} s")
    per_component = results[2][1] / len(args.components)
    print(f"  no-change rerun per component: {per_component * 1000:.0f} ms")


if __name__ == "__main__":
    main()
