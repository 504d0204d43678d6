"""Time patches.upstreamed and patches.refresh on every shipped series (real PyPI sdists).

Runs the real CLI on a copy of the shipped repository (a git work tree in a
temporary folder, its own work directory, the given cache): upstreamed
against each release's own refs, upstreamed against the next point releases
(keystone 28.0.2, nova 32.2.1, oslo.messaging 17.1.1) with a fresh work
directory and again with its trees in place, refresh --dry-run onto those
releases, and the real refresh that rewrites the series and source-refs.yaml (committed after each).
Prints seconds per step and the fresh/warm ratio.
Run: python bench/lifecycle_bench.py [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEXT = {"keystone": "28.0.2", "nova": "32.2.1", "oslo.messaging": "17.1.1"}  # the shipped 2025.2 series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", default=str(Path("~/.cache/openstack-patches").expanduser()),
                        help="cache_dir (sdists are downloaded once into it)")
    args = parser.parse_args()
    results: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="lifecycle-bench-") as scratch:
        repo = Path(scratch) / "repo"
        for name in ("releases", "patches", "overrides"):
            shutil.copytree(ROOT / name, repo / name)
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
        subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", "shipped"], cwd=repo, check=True)
        env = {**os.environ, "INVOKE_PIPELINE_ROOT": str(repo), "INVOKE_PIPELINE_WORKDIR": str(repo / "build"),
               "INVOKE_PIPELINE_CACHE_DIR": args.cache}

        def run(label: str, *cli: str, expect: tuple[int, ...] = (0,)) -> None:
            started = time.perf_counter()
            done = subprocess.run(["invoke", "-r", str(ROOT), *cli], env=env, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if done.returncode not in expect:
                sys.exit(f"{label}: exit {done.returncode}\n{done.stderr}")
            results.append((label, seconds))

        def upstreamed_next(label: str) -> None:
            started = time.perf_counter()
            for component, ref in NEXT.items():
                run(f"  {component} --to {ref}", "patches.upstreamed", "--release", "2025.2", "--component", component,
                    "--to", ref, expect=(61,))
            results.append((label, time.perf_counter() - started))

        run("upstreamed, own refs (fresh work dir)", "patches.upstreamed", "--release", "2025.2")
        run("upstreamed, own refs (trees in place)", "patches.upstreamed", "--release", "2025.2")
        upstreamed_next("upstreamed --to next point releases, all series (fresh trees)")
        upstreamed_next("upstreamed --to next point releases, all series (trees in place)")
        for component, ref in NEXT.items():
            run(f"refresh --dry-run {component} --to {ref}", "patches.refresh", "--release", "2025.2", "--component",
                component, "--to", ref, "--dry-run")
        for component, ref in NEXT.items():
            run(f"refresh {component} --to {ref} (writes)", "patches.refresh", "--release", "2025.2", "--component",
                component, "--to", ref)
            # as an operator does: commit each refresh (the next one refuses uncommitted source-refs.yaml)
            subprocess.run([*git, "commit", "-qam", f"refresh {component}"], cwd=repo, check=True)
    width = max(len(label) for label, _ in results)
    for label, seconds in results:
        print(f"{label.ljust(width)}  {seconds:6.2f} s")
    figures = dict(results)
    fresh = figures["upstreamed --to next point releases, all series (fresh trees)"]
    warm = figures["upstreamed --to next point releases, all series (trees in place)"]
    print(f"fresh/warm ratio of upstreamed --to: {fresh / warm:.1f}x")


if __name__ == "__main__":
    main()
