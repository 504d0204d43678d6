"""Start-up and no-change figures of the commands users run most, on the shipped configuration.

Prints, each the median of several runs of the real CLI: `invoke --list`;
a no-change `invoke build --release 2025.2 --service keystone`; a no-change
`invoke build --release 2025.2 --all`; a no-change `invoke patch --release
2025.2`; and the lock overhead: the same no-change patch run with locks
versus the raw stage calls without them (in one process, many rounds).
Run after one `invoke build --release 2025.2 --all` (the warm cache):
    python bench/startup_bench.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cli(*args: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = subprocess.run(["invoke", "-r", str(ROOT), *args], capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if result.returncode != 0:
            raise SystemExit(f"invoke {' '.join(args)} failed:\n{result.stderr}")
    return statistics.median(times)


def lock_overhead(rounds: int) -> tuple[float, float]:
    from pipeline.core import locks
    from pipeline.core.releases import load_project
    from pipeline.core.settings import Settings
    from pipeline.patches import series

    project = load_project(Settings.from_mapping({}))
    with contextlib.redirect_stderr(io.StringIO()):
        series.patch(project, "2025.2")  # warm

        def run(with_locks: bool) -> float:
            started = time.perf_counter()
            for _ in range(rounds):
                if with_locks:
                    with locks.hold(project.layout.lock("2025.2"), "bench"):
                        series.patch(project, "2025.2")
                else:
                    series.patch(project, "2025.2")
            return (time.perf_counter() - started) / rounds

        return run(True), run(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures = [
        ("invoke --list", cli("--list", rounds=args.rounds)),
        ("no-change build --service keystone", cli("build", "--release", "2025.2", "--service", "keystone", rounds=args.rounds)),
        ("no-change build --all (6 services)", cli("build", "--release", "2025.2", "--all", rounds=args.rounds)),
        ("no-change patch --release 2025.2", cli("patch", "--release", "2025.2", rounds=args.rounds)),
    ]
    width = max(len(label) for label, _ in figures)
    print(f"median of {args.rounds} runs each (target: under 1 s)")
    for label, seconds in figures:
        print(f"  {label.ljust(width)}  {seconds:6.2f} s")
    locked, bare = lock_overhead(args.rounds * 4)
    print(f"  lock overhead on a no-change patch run: {(locked - bare) * 1000:.1f} ms "
          f"({locked * 1000:.0f} ms with locks, {bare * 1000:.0f} ms without)")


if __name__ == "__main__":
    main()
