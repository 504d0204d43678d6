"""Fix-to-image figures for one service of 2025.2 (default keystone), measured in one run on this machine.

Every time is the whole `invoke build --release R --service S` command as a
user runs it.  Prints:
  - a cold build (`--force`, bases present; empty package-file cache and an
    empty uv cache) and a bare `uv pip install` of the same locked set into a
    fresh venv with an equally cold cache, and their ratio; and the same bare
    install compiling the byte code an image ships (`--compile-bytecode`);
  - a no-change rerun (and its build calls);
  - a rebuild after a real code change in one service patch, and in one
    library patch (the median of --samples changes, each one a new change of
    the same line), each against its target (10 % / 20 % of cold, or the bare
    `uv pip install --no-deps` of that one package plus 3 s), with the layers
    the new image shares with the previous one and the bytes it changes, and
    a check that the change is in the image, and where the middle sample's
    time went (each step, the engine's RUN, COPY and ADD steps, start-up);
  - the final image size against runtime base + venv (+5 %), and the runtime
    base against the installed size of its Debian packages (its dead weight);
  - with --all-services: the unique layer bytes of the release's six images
    together against the largest single image, before (each image with its
    own venv) and after (the shared release layer), and a no-change
    `invoke build --all` (the median of three: its time and what each image row says).
Run: python bench/image_bench.py [--service keystone] [--all-services] [--samples 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import docker  # noqa: E402 - after sys.path.insert of the repository root
from changes import change_code  # noqa: E402 - after sys.path.insert of the repository root

STEP_LOGS: list[Path] = []


def invoke(env: dict, *args: str) -> tuple[float, str]:
    """Run the CLI; its stderr (the progress lines, with each step's time) is kept next to the work directory."""
    started = time.perf_counter()
    result = subprocess.run(["invoke", "-r", str(ROOT), *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    log = Path(env["INVOKE_PIPELINE_WORKDIR"]).parent / "bench-logs" / f"{len(STEP_LOGS) + 1:02d}-{args[0]}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(f"$ invoke {' '.join(args)}\n{result.stderr}total {seconds:.2f} s\n")
    STEP_LOGS.append(log)
    if result.returncode != 0:
        raise SystemExit(f"invoke {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, result.stdout


ENSURE_BASES = """
import sys
from invoke import Config
from pipeline.image.bases import ensure_bases
from pipeline.image.prepare import target_of
from pipeline.core.cli import project_from
from pipeline.image.engine import connect

config = Config(project_location=sys.argv[1])
config.load_project()
config.load_shell_env()
project = project_from(type("Context", (), {"config": config})())
release = project.release(sys.argv[2])
client = connect(project.settings)
ensure_bases(client, project, release, target_of(client, release))
"""


def ensure_bases(env: dict, base: Path, release: str) -> None:
    """The runtime and build bases the cold build assumes present, built now (with a cache and work directory
    of their own, so the cold build's caches stay empty) if the engine lacks them: a cold figure is the
    layers above the bases, as an operator's every build after the first is."""
    own = {**env, "INVOKE_PIPELINE_WORKDIR": str(base / "bases" / "build"), "INVOKE_PIPELINE_CACHE_DIR": str(base / "bases" / "cache")}
    result = subprocess.run([sys.executable, "-c", ENSURE_BASES, str(ROOT), release], env=own, cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the bases of {release} could not be built:\n{result.stderr[-2000:]}")


def step_times(progress: str) -> list[tuple[str, float]]:
    """Each finished step of a build's progress lines ("<step>: <status> (12.3s)"), with its seconds."""
    return [(m[1], float(m[2])) for m in re.finditer(r"^(\S.*?): [^:\n]+ \((\d+(?:\.\d+)?)s\)$", progress, re.M)]


def total(steps: list[tuple[str, float]], prefix: str) -> float:
    return sum(seconds for step, seconds in steps if step.startswith(prefix))


def longest(steps: list[tuple[str, float]], prefix: str) -> float:
    """Of steps that ran side by side, the one the command waited for."""
    return max((seconds for step, seconds in steps if step.startswith(prefix)), default=0.0)


def cold_breakdown(progress: str) -> str:
    """Where a cold build's time went, from its progress lines."""
    steps = step_times(progress)
    return (f"dependency locks {total(steps, 'dependencies of'):.1f} s, release layers {total(steps, 'release level'):.1f} s, "
            f"tree wheels and their layers {longest(steps, 'wheel ') + longest(steps, 'layer '):.1f} s (made side by side), "
            f"service image {total(steps, 'image '):.1f} s")


def change_breakdown(progress: str, seconds: float, build_log: str) -> str:
    """Where a rebuild's time went: its steps (the image's engine steps from its build log), and the rest."""
    steps = step_times(progress)
    marks = [(float(m[1]), m[2]) for m in re.finditer(r"^\[\s*(\d+\.\d+)s\] Step \d+/\d+ : (\w+)", build_log, re.M)]
    engine: dict[str, float] = {}
    for (at, instruction), (after, _) in itertools.pairwise(marks):  # the last step (LABEL) has no end mark
        engine[instruction] = engine.get(instruction, 0.0) + after - at
    parts = {"patch": longest(steps, "patch "), "wheel": total(steps, "wheel "), "layer": total(steps, "layer "),
             "image": total(steps, "image "), "sbom": total(steps, "sbom ")}
    rest = seconds - sum(parts.values())
    return (", ".join(f"{name} {t:.1f} s" for name, t in parts.items())
            + " (engine steps: " + ", ".join(f"{step} {engine.get(step, 0):.1f} s" for step in ("RUN", "COPY", "ADD")) + ")"
            + f", start-up and the rest {rest:.1f} s")


def bare_install(requirements: list[str], target_tree: Path | None = None, version: str = "",
                 compile_bytecode: bool = False) -> float:
    """A fresh venv and an empty uv cache: install the pins (or one tree, --no-deps) and time it
    (with ``compile_bytecode``, with the byte code an image ships)."""
    from pipeline.image.wheels import uv_bin

    with tempfile.TemporaryDirectory(prefix="bare-") as scratch:
        venv, cache = Path(scratch) / "venv", Path(scratch) / "uv-cache"
        subprocess.run([uv_bin(), "venv", "-q", str(venv)], check=True)
        env = {**os.environ, "UV_CACHE_DIR": str(cache), "VIRTUAL_ENV": str(venv)}
        if target_tree is not None:
            env["PBR_VERSION"] = version
            cmd = [uv_bin(), "pip", "install", "-q", "--no-deps", str(target_tree)]
        else:
            (Path(scratch) / "req.txt").write_text("\n".join(requirements) + "\n")
            cmd = [uv_bin(), "pip", "install", "-q", "--no-deps", "-r", str(Path(scratch) / "req.txt"),
                   *(["--compile-bytecode"] if compile_bytecode else [])]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        return time.perf_counter() - started


def layer_dirs(client, image: str) -> list[str]:
    data = client.api.inspect_image(image)["GraphDriver"]["Data"]
    dirs = [data["UpperDir"], *data.get("LowerDir", "").split(":")] if data.get("LowerDir") else [data["UpperDir"]]
    return [d for d in dirs if d]


def dir_bytes(path: str) -> int:
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout.split()[0])


def layer_sizes(client, image: str) -> dict[str, int]:
    """Bytes of each layer of the image by its diff ID: what a registry stores and a node pulls once."""
    layers = client.api.inspect_image(image)["RootFS"]["Layers"]
    return {layer: dir_bytes(d) for layer, d in zip(layers, reversed(layer_dirs(client, image)), strict=False)}


def shared_and_changed(client, old: str, new: str) -> tuple[int, int, int]:
    old_layers = set(client.api.inspect_image(old)["RootFS"]["Layers"])
    sizes = layer_sizes(client, new)
    changed = sum(size for layer, size in sizes.items() if layer not in old_layers)
    return len(old_layers & sizes.keys()), len(sizes), changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", default="2025.2")
    parser.add_argument("--service", default="keystone")
    parser.add_argument("--library", default="oslo.messaging")
    parser.add_argument("--all-services", action="store_true")
    parser.add_argument("--samples", type=int, default=3, metavar="N",
                        help="code changes measured per patch (the median is the figure; default 3)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR (new) and keep it: each command's progress lines are in DIR/bench-logs/")
    args = parser.parse_args()
    client = docker.from_env()
    out = Printer()
    out.append(f"{args.service} ({args.release}), library {args.library}")

    if args.keep:
        if args.keep.exists():  # a new directory: an old cache would make the cold figures warm
            raise SystemExit(f"--keep {args.keep}: the directory exists; name a new one")
        args.keep.mkdir(parents=True)
    with contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory(prefix="image-bench-") as scratch:
        base = Path(scratch)
        for name in ("releases", "patches", "overrides"):
            shutil.copytree(ROOT / name, base / name)
        env = {**os.environ, "INVOKE_PIPELINE_ROOT": str(base), "INVOKE_PIPELINE_WORKDIR": str(base / "build"),
               "INVOKE_PIPELINE_CACHE_DIR": str(base / "cache"), "UV_CACHE_DIR": str(base / "uv-cache")}
        build = ["build", "--release", args.release, "--service", args.service, "--format", "json"]
        invoke(env, "patch", "--release", args.release)  # sources in place: not part of the image figures
        ensure_bases(env, base, args.release)
        cold, _ = invoke(env, *build, "--force")
        record = json.loads((base / "build" / args.release / args.service / "image.json").read_text())
        locked = [p for layer in record["layers"] for p in layer["packages"]
                  if layer["name"].startswith("release level") or layer["name"] == "dependencies"]
        bare = bare_install(locked)
        compiled = bare_install(locked, compile_bytecode=True)
        out.append(f"  cold build (--force, bases present, cold caches)   {cold:7.1f} s")
        out.append(f"    of which {cold_breakdown(STEP_LOGS[-1].read_text())}")
        out.append(f"  bare uv pip install of the same {len(locked)} pins      {bare:7.1f} s   ratio {cold / bare:.2f} (target <= 3)")
        out.append(f"    the same with the byte code an image ships      {compiled:7.1f} s   ({compiled / bare:.2f} x the bare "
                   f"install; cold build {cold / compiled:.2f} x this)")

        seconds, stdout = invoke(env, *build)
        calls = json.loads(stdout)[0]["result"]
        out.append(f"  no-change rerun                                     {seconds:7.2f} s   ({calls}, {seconds / cold:.1%} of cold)")

        for component, share in ((args.service, 0.10), (args.library, 0.20)):
            seconds_each, shared_each, present_each, breakdowns = [], [], [], []
            for sample in range(1, args.samples + 1):  # each sample another code change of the same patch
                patch, mark = change_code(base / "patches", component, args.release, sample)
                previous = record["image_id"]
                seconds, _ = invoke(env, *build)
                record = json.loads((base / "build" / args.release / args.service / "image.json").read_text())
                seconds_each.append(seconds)
                build_log = (base / "build" / args.release / args.service / "build.log").read_text()
                breakdowns.append(change_breakdown(STEP_LOGS[-1].read_text(), seconds, build_log))
                shared_each.append(shared_and_changed(client, previous, record["image_id"]))
                site = "/var/lib/openstack/lib/python3.11/site-packages"
                present_each.append(mark in client.containers.run(
                    record["image_id"], ["sh", "-c", f"grep -rh '{mark}' {site} | head -1"], remove=True).decode())
            tree = base / "build" / "patched" / args.release / component
            single = bare_install([], tree, record["sources"][component]["version"])
            target = max(share * cold, single + 3)
            median = statistics.median(seconds_each)
            shared, total, changed = shared_each[-1]
            out.append(f"  after a code change in {patch.name[:40]:40s}  {median:6.1f} s   {median / cold:.1%} of cold "
                       f"(median of {len(seconds_each)}: {', '.join(f'{s:.1f}' for s in seconds_each)} s); "
                       f"target {target:.1f} s (bare --no-deps install {single:.1f} s); "
                       f"{shared} of {total} layers shared, {changed / 1e6:.1f} MB new; "
                       f"change in image: {all(present_each)}")
            middle = sorted(range(len(seconds_each)), key=seconds_each.__getitem__)[len(seconds_each) // 2]
            out.append(f"    where sample {middle + 1}'s {seconds_each[middle]:.1f} s went: {breakdowns[middle]}")

        size = client.api.inspect_image(record["image_id"])["Size"]
        runtime = client.api.inspect_image(record["bases"]["runtime_id"])["Size"]
        venv = int(client.containers.run(record["image_id"], ["du", "-sb", "/var/lib/openstack"], remove=True).split()[0])
        out.append(f"  image {size / 1e6:.0f} MB = runtime base {runtime / 1e6:.0f} MB + venv {venv / 1e6:.0f} MB "
                   f"+ {(size - runtime - venv) / 1e6:.1f} MB ({(size - runtime - venv) / (runtime + venv):+.1%}; target <= +5 %)")
        script = ("import subprocess, os\n"
                  "kb = sum(int(x) for x in subprocess.run(['dpkg-query', '-W', '-f', '${Installed-Size}\\n'], "
                  "capture_output=True, text=True).stdout.split())\n"
                  "def du(p): return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs)\n"
                  "print(kb * 1024, du('/var/lib/apt/lists'), du('/var/cache/apt'))")
        installed = [int(x) for x in client.containers.run(record["bases"]["runtime_id"], ["python3.11", "-c", script],
                                                           remove=True).split()]
        out.append(f"  runtime base {runtime / 1e6:.0f} MB; its Debian packages install {installed[0] / 1e6:.0f} MB; "
                   f"apt lists {installed[1] / 1e6:.2f} MB, apt cache {installed[2] / 1e6:.2f} MB")

        if args.all_services:
            invoke(env, "build", "--release", args.release, "--all", "--jobs", "2")
            runs = [invoke(env, "build", "--release", args.release, "--all", "--format", "json") for _ in range(3)]
            seconds = statistics.median(s for s, _ in runs)
            actions = sorted({row["result"] for _, stdout in runs for row in json.loads(stdout)})
            out.append(f"  no-change build --all                               {seconds:7.2f} s   (median of 3: "
                       f"{', '.join(f'{s:.2f}' for s, _ in runs)} s; {', '.join(actions)}; target < 1 s)")
            records = [json.loads(p.read_text()) for p in (base / "build" / args.release).glob("*/image.json")]
            sizes = {r["service"]: client.api.inspect_image(r["image_id"])["Size"] for r in records}
            unique = {layer: size for r in records for layer, size in layer_sizes(client, r["image_id"]).items()}
            after = sum(unique.values())
            before = runtime + sum(s - runtime for s in sizes.values())
            largest = max(sizes.values())
            out.append(f"  six images: unique layer bytes {after / 1e6:.0f} MB = {after / largest:.2f} x the largest image "
                       f"({largest / 1e6:.0f} MB); each with its own venv it would be {before / 1e6:.0f} MB = "
                       f"{before / largest:.2f} x (target <= 2)")


class Printer(list):
    """Figures are printed as they are measured (a long run that fails later keeps what it had)."""

    def append(self, line: str) -> None:
        super().append(line)
        print(line, flush=True)


if __name__ == "__main__":
    main()
