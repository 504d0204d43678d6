"""Time the patch stage on the shipped 2025.2 series (real PyPI sdists).

Prints: cold patch (empty work dir and cache: download + unpack + apply),
patch with a warm cache (empty work dir), a no-change rerun, a rerun after a
real code change to one patch, patches.check of the shipped series, and
patches.check of a made-up series of 30 patches across 6 components (each a
real change made with git on the real sdist trees).
Run: python bench/patch_bench.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from changes import change_code  # noqa: E402 - after sys.path.insert of the repository root

from pipeline.core import locks  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.core.releases import load_project  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.core.settings import Settings  # noqa: E402 - after sys.path.insert of the repository root
from pipeline.patches import series  # noqa: E402 - after sys.path.insert of the repository root


def timed(label: str, func, results: list) -> None:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        func()
    results.append((label, time.perf_counter() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", default="2025.2")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="patch-bench-") as scratch:
        base = Path(scratch)
        for name in ("releases", "patches", "overrides"):
            shutil.copytree(ROOT / name, base / name)
        settings = Settings.from_mapping({"root": str(base), "workdir": "build", "cache_dir": "cache"})

        def run():
            project = load_project(settings)
            with locks.hold(project.layout.lock(args.release), "bench"):
                series.patch(project, args.release, (), 4)

        def check():
            results = series.check(load_project(settings), [args.release])
            assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
            return results

        results: list[tuple[str, float]] = []
        timed("cold patch of every component (empty cache, downloads sdists)", run, results)
        shutil.rmtree(base / "build")
        timed("patch, warm cache, empty work dir", run, results)
        timed("no-change rerun", run, results)
        victim, _ = change_code(base / "patches", "keystone", args.release)
        timed(f"rerun after a code change in {victim.name}", run, results)
        timed("patches.check (shipped series)", check, results)
        made = make_series(base, args.release, 30)
        timed(f"patches.check ({made} series, 30 patches)", check, results)

    print(f"release {args.release}")
    width = max(len(label) for label, _ in results)
    for label, seconds in results:
        print(f"  {label.ljust(width)}  {seconds:7.2f} s")


def make_series(base: Path, release: str, count: int) -> int:
    """``count`` real patches spread over the release's components: each appends a line to a real module."""
    import subprocess

    project = load_project(Settings.from_mapping({"root": str(base), "workdir": "build", "cache_dir": "cache"}))
    components = list(project.release(release).refs)
    per = -(-count // len(components))
    made = 0
    for component in components:
        tree = base / "build" / "src" / release / component
        existing = sorted((base / "patches" / component / release).glob("*.patch"))
        modules = sorted(p for p in tree.rglob("*.py") if "tests" not in p.parts)[:per]
        work = base / "work" / component
        subprocess.run(["git", "clone", "-q", str(tree), str(work)], check=True)
        for patch in existing:
            subprocess.run(["git", "am", "-q", str(patch)], cwd=work, check=True, capture_output=True,
                           env={"GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b", "HOME": str(base)})
        for i, module in enumerate(modules):
            if made >= count:
                break
            path = work / module.relative_to(tree)
            path.write_text(path.read_text() + f"\n# bench change {i}\n")
            env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
                   "GIT_COMMITTER_EMAIL": "b@b", "HOME": str(base)}
            subprocess.run(["git", "commit", "-qam", f"bench change {i} in {module.name}"], cwd=work, check=True, env=env)
            patch = subprocess.run(["git", "format-patch", "-1", "--stdout"], cwd=work, check=True, capture_output=True).stdout
            number = len(existing) + i + 1
            out = base / "patches" / component / release / f"{number:04d}-bench-change-{i}.patch"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(patch)
            made += 1
    return sum(1 for c in components if (base / "patches" / c / release).is_dir())


if __name__ == "__main__":
    main()
