"""Time `invoke build` for one service of 2025.2 on the local Docker engine.

Prints: a cold build (fresh work dir, no layer cache for the service image;
the shared base images are reused), a rebuild after changing one service
patch, one after changing one library patch, a no-change rerun, each with its
ratio to the cold build, and the image size next to its venv size.
Run: python bench/image_bench.py [--service keystone]
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

import docker  # noqa: E402

from pipeline import build  # noqa: E402
from pipeline.config import Settings, load_project  # noqa: E402

SHARED = ROOT.parent / "shared" / "upper-constraints"


def reword(patch: Path) -> None:
    """Change the patch's commit message: a new patch file, the same code change."""
    text, count = re.subn(r"^(Subject: (?:\[PATCH[^\]]*\] )?)", r"\1(bench) ", patch.read_text(), count=1, flags=re.M)
    assert count == 1, patch
    patch.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", default="2025.2")
    parser.add_argument("--service", default="keystone")
    parser.add_argument("--library", default="oslo.messaging")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="image-bench-") as scratch:
        base = Path(scratch)
        for name in ("releases", "patches", "overrides"):
            shutil.copytree(ROOT / name, base / name)
        settings = Settings.from_mapping({"root": str(base), "workdir": "build", "cache_dir": "cache",
                                          "constraints_url": f"file://{SHARED}/{{release}}.txt"})
        figures: list[tuple[str, float, int]] = []

        def measure(label: str, force: bool = False) -> None:
            project = load_project(settings)
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                (result,) = build.build(project, args.release, [args.service], force=force)
            figures.append((label, time.perf_counter() - started, result.build_calls))
            return result

        result = measure("cold build (service layers uncached)", force=True)
        reword(sorted((base / "patches" / args.service / args.release).glob("*.patch"))[-1])
        measure("after changing one service patch")
        reword(sorted((base / "patches" / args.library / args.release).glob("*.patch"))[-1])
        measure("after changing one library patch")
        result = measure("no-change rerun")

        client = docker.from_env()
        image = result.record["image_id"]
        size = client.images.get(image).attrs["Size"]
        venv = int(client.containers.run(image, ["du", "-sb", "/var/lib/openstack"], remove=True).split()[0])

    cold = figures[0][1]
    print(f"{args.service} ({args.release}), library {args.library}")
    width = max(len(f[0]) for f in figures)
    for label, seconds, calls in figures:
        print(f"  {label.ljust(width)}  {seconds:7.2f} s  {seconds / cold:6.1%} of cold  ({calls} build calls)")
    print(f"  image size {size / 1e6:.0f} MB, venv {venv / 1e6:.0f} MB ({venv / size:.0%} of the image)")


if __name__ == "__main__":
    main()
