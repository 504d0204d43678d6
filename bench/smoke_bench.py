"""Runtime-complete images and their smoke, measured in one run on this machine (2025.2 by default).

Prints:
  - each service image's size without the runtime additions (the repository with the release's
    runtime.yaml left out, built in a work directory and under an image prefix of its own) and with them
    (the shipped configuration), the growth, and what the additions weigh in the image: its Debian
    packages' layers (each the size of its packages image less its parent) and the Python distributions
    it has that the image without them lacks (their files as installed).  The growth must not exceed them;
  - the unique layer bytes of all images against the largest one, without and with the additions;
  - `invoke smoke` with every image already built, from nothing on the engine to the last check and torn
    down: its whole time, the steps, and where the time went (the slowest steps).
With --whole-release, instead, the release as issue 33 measures it, in a fresh clone of this repository
(its HEAD) with an empty work directory and cache (bases present on the engine):
  - the cold `invoke build --release R --all` against a bare `uv pip install --compile-bytecode --no-deps`
    of the union of the images' locked sets into a fresh venv with an empty uv cache (both download
    and compile the byte code the images ship; target: build <= 3 x bare);
  - a no-change `invoke build --all` (the median of three; target: under 1 s);
  - the unique layer bytes of all images against the largest image (target: <= 2 x);
  - the whole `invoke smoke --release R` (every service; target: <= 15 minutes on 2 cores).
Run: python bench/smoke_bench.py [--release 2025.2] [--keep DIR] [--whole-release]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402 - after sys.path.insert of the repository root
from image_bench import layer_sizes  # noqa: E402 - after sys.path.insert of the repository root

from pipeline.core.releases import load_release  # noqa: E402 - after sys.path.insert of the repository root

# Every distribution of the image and the bytes of its files as installed.
DISTRIBUTIONS = r"""
import importlib.metadata as m, json, os
sizes = {}
for dist in m.distributions():
    total = 0
    for f in dist.files or []:
        path = dist.locate_file(f)
        if os.path.isfile(path):
            total += os.path.getsize(path)
    sizes[dist.metadata["Name"].lower().replace("_", "-")] = total
print(json.dumps(sizes))
"""


def invoke(env: dict, *args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run(["invoke", "-r", str(ROOT), *args], env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"invoke {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return time.perf_counter() - started, result


def build_all(env: dict, release: str, services: list[str]) -> dict[str, dict]:
    invoke(env, "build", "--release", release, "--all", "--jobs", "2")
    workdir = Path(env["INVOKE_PIPELINE_WORKDIR"])
    return {s: json.loads((workdir / release / s / "image.json").read_text()) for s in services}


def size(client, ref: str) -> int:
    return client.api.inspect_image(ref)["Size"]


def debian_bytes(client, record: dict) -> int:
    """The bytes of the image's Debian packages layers: the top layer of each packages image it stacks."""
    sizes = layer_sizes(client, record["image_id"])
    tops = {client.api.inspect_image(layer["image"])["RootFS"]["Layers"][-1]
            for layer in record["layers"] if "debian" in layer and layer.get("image")}
    return sum(sizes[layer] for layer in tops if layer in sizes)


def distributions(client, image: str) -> dict[str, int]:
    return json.loads(client.containers.run(image, ["python", "-c", DISTRIBUTIONS], remove=True))


def unique_bytes(client, records: dict[str, dict]) -> tuple[int, int]:
    """Bytes of every distinct layer of the images, and the largest image."""
    unique = {layer: b for r in records.values() for layer, b in layer_sizes(client, r["image_id"]).items()}
    return sum(unique.values()), max(size(client, r["image_id"]) for r in records.values())


def whole_release(base: Path, release: str) -> None:
    """Issue 33's figures for a whole release, from a fresh clone (see the module's notes)."""
    from image_bench import bare_install, ensure_bases

    clone = base / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "INVOKE_PIPELINE_WORKDIR": str(base / "build"), "INVOKE_PIPELINE_CACHE_DIR": str(base / "cache"),
           "INVOKE_PIPELINE_ROOT": str(clone)}
    ensure_bases(env, base, release)
    client = docker.from_env()
    services = list(load_release(clone / "releases" / release).services)

    def run(*args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
        started = time.perf_counter()
        result = subprocess.run(["invoke", "-r", str(clone), *args], env=env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise SystemExit(f"invoke {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return time.perf_counter() - started, result

    cold, _ = run("build", "--release", release, "--all", "--jobs", "2")
    locks = Path(env["INVOKE_PIPELINE_WORKDIR"]) / ".stamps" / "lock" / release
    union = sorted({f"{f['name']}=={f['version']}" for path in locks.glob("*.json")
                    for f in json.loads(path.read_text())["result"]["files"]})
    bare = bare_install(union, compile_bytecode=True)
    print(f"{release}, {len(services)} services, a fresh clone, bases present, empty caches:")
    print(f"  cold invoke build --all: {cold:.0f} s; bare uv pip install --compile-bytecode of the union of the "
          f"locked sets ({len(union)} packages): {bare:.0f} s; ratio {cold / bare:.2f} (target <= 3)")
    again = sorted(run("build", "--release", release, "--all")[0] for _ in range(3))
    print(f"  no-change invoke build --all: {again[1]:.2f} s (median of {', '.join(f'{s:.2f}' for s in again)}; "
          "target < 1 s)")
    workdir = Path(env["INVOKE_PIPELINE_WORKDIR"])
    records = {s: json.loads((workdir / release / s / "image.json").read_text()) for s in services}
    unique, largest = unique_bytes(client, records)
    print(f"  unique layer bytes of the {len(records)} images: {unique / 1e6:.0f} MB = {unique / largest:.2f} x the "
          f"largest image ({largest / 1e6:.0f} MB; target <= 2)")
    seconds, result = run("smoke", "--release", release, "--format", "json", check=False)
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    rows = report.get("rows", [])
    print(f"  invoke smoke --release {release} (every service): {seconds:.0f} s = {seconds / 60:.1f} min (target <= 15); "
          f"exit {result.returncode}; {sum(r['result'] == 'ok' for r in rows)} of {len(rows)} steps ok")
    for row in rows:
        if row["result"] != "ok":
            print(f"    {row['service']}: {row['step']}: {row['result']}: {row['detail'].splitlines()[0][:160] if row['detail'] else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default="2025.2")
    parser.add_argument("--keep", help="keep the work directories here (default: a temporary folder, removed)")
    parser.add_argument("--whole-release", action="store_true", help="issue 33's figures for the whole release")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="smoke-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    if args.whole_release:
        try:
            whole_release(base, args.release)
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
        return
    client = docker.from_env()
    release = args.release
    services = list(load_release(ROOT / "releases" / release).services)
    bare_prefix = "openstack-patches-bench-bare"
    try:
        bare_root = base / "without-runtime"
        for folder in ("releases", "patches", "overrides", "deploy"):
            shutil.copytree(ROOT / folder, bare_root / folder, dirs_exist_ok=True)
        (bare_root / "releases" / release / "runtime.yaml").unlink()
        common = {**os.environ, "INVOKE_PIPELINE_CACHE_DIR": str(base / "cache")}
        bare_env = {**common, "INVOKE_PIPELINE_ROOT": str(bare_root), "INVOKE_PIPELINE_WORKDIR": str(bare_root / "build"),
                    "INVOKE_PIPELINE_IMAGE_PREFIX": bare_prefix}
        env = {**common, "INVOKE_PIPELINE_WORKDIR": str(base / "build")}
        before = build_all(bare_env, release, services)
        after = build_all(env, release, services)

        print(f"images of {release} without and with runtime.yaml's additions (MB):")
        print(f"{'service':<10} {'without':>8} {'with':>8} {'growth':>8} {'Debian':>7} {'Python':>7}  growth <= additions")
        for service in services:
            small, large = size(client, before[service]["image_id"]), size(client, after[service]["image_id"])
            debian = debian_bytes(client, after[service])
            had = distributions(client, before[service]["image_id"])
            python = sum(b for name, b in distributions(client, after[service]["image_id"]).items() if name not in had)
            print(f"{service:<10} {small / 1e6:8.0f} {large / 1e6:8.0f} {(large - small) / 1e6:8.0f} {debian / 1e6:7.0f} "
                  f"{python / 1e6:7.0f}  {'yes' if large - small <= (debian + python) * 1.02 + 1e6 else 'NO'}")
        for label, records in (("without", before), ("with", after)):
            unique, largest = unique_bytes(client, records)
            print(f"unique layer bytes of the {len(records)} images {label}: {unique / 1e6:.0f} MB "
                  f"= {unique / largest:.2f} x the largest image ({largest / 1e6:.0f} MB)")

        seconds, result = invoke(env, "smoke", "--release", release, "--format", "json", check=False)
        report = json.loads(result.stdout) if result.stdout.strip() else {}
        rows = report.get("rows", [])
        print(f"\ninvoke smoke --release {release}, every image built: {seconds:.0f} s from the command to its end "
              f"(exit {result.returncode}; {sum(r['result'] == 'ok' for r in rows)} of {len(rows)} steps ok)")
        slowest = sorted(((r["seconds"], f"{r['service']}: {r['step']}") for r in rows), reverse=True)[:8]
        print("slowest steps: " + "; ".join(f"{name} {sec:.0f} s" for sec, name in slowest))
        if result.returncode != 0:
            print(result.stderr[-3000:])
    finally:
        for record in (locals().get("before") or {}).values():
            for tag in record.get("tags", []):
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_image(tag)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
