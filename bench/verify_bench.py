"""What checking the caches costs, measured in one run on the shipped configuration.

Every cached artefact that goes into an image is checked against the hash
recorded when it was written, in the one read a build makes of it; a rerun
with nothing to build reads none.  Prints:
  - a no-change `invoke build --release R --all` (the median of --rounds runs;
    target: under 1 s), and what each image row says; with --against DIR
    (another checkout, e.g. of main, built --all in its own work directory),
    its no-change build in the same rounds, interleaved, and the ratio;
  - the check a build makes: for each service, the bytes of its patched trees'
    layer archives read and hashed (`tree_layer.read_verified`), and the time,
    against that service's no-change build; and the byte code entries of the
    release's trees read and hashed (what making all their layers again reads);
  - healing: keystone built again (its record removed, so the build runs with
    the engine's cache) with its layer archive intact, then with 16 bytes of it
    overwritten (same size, same mtime): the damaged archive is made again, and
    the ratio of the two.
Run after one `invoke build --release 2025.2 --all` (the default work directory):
    python bench/verify_bench.py [--release 2025.2] [--rounds 5] [--against DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cli(*args: str, root: Path = ROOT) -> tuple[float, str, str]:
    started = time.perf_counter()
    result = subprocess.run(["invoke", "-r", str(root), *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"invoke {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds, result.stdout, result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--release", default="2025.2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", type=Path, metavar="DIR", help="another checkout, built --all in its own work directory")
    args = parser.parse_args()

    from pipeline.core.files import sha256_file
    from pipeline.core.releases import load_project
    from pipeline.core.settings import Settings
    from pipeline.image import tree_layer

    project = load_project(Settings.from_mapping({}))
    layout, release = project.layout, args.release
    services = project.release(release).services
    records = {s: json.loads(layout.image_record(release, s).read_text()) for s in services}

    runs, other = [], []
    for _ in range(args.rounds):  # interleaved: the machine's load weighs on both alike
        runs.append(cli("build", "--release", release, "--all", "--format", "json"))
        if args.against:
            other.append(cli("build", "--release", release, "--all", "--format", "json", root=args.against)[0])
    no_change = statistics.median(seconds for seconds, _, _ in runs)
    results = sorted({row["result"] for _, out, _ in runs for row in json.loads(out)})
    single = statistics.median(cli("build", "--release", release, "--service", "keystone")[0]
                               for _ in range(args.rounds))
    print(f"no-change build --release {release} --all: {no_change:.2f} s (median of {args.rounds}: "
          f"{', '.join(f'{s:.2f}' for s, _, _ in runs)} s; {no_change:.0%} of the 1 s target; rows: {', '.join(results)})")
    if other:
        print(f"  {args.against} in the same rounds: {statistics.median(other):.2f} s "
              f"({', '.join(f'{s:.2f}' for s in other)} s); this checkout / that one: "
              f"{no_change / statistics.median(other):.2f}")

    # The archives of every tree layer the release's images hold, by their recorded sha256.
    entries = {}
    for record_file in layout.tree_layers().glob("*/layer.json"):
        data = json.loads(record_file.read_text())
        entries[data["sha256"]] = tree_layer.TreeLayer(None, record_file.parent, data["sha256"], data["metadata_sha256"],
                                                       data["dist_info"], data["bytecode"])
    print("the check a build of each image makes (its trees' layer archives read once and hashed):")
    for service, record in records.items():
        layers = [entries[tree["sha256"]] for tree in record["tree_layers"].values()]
        started = time.perf_counter()
        size = sum(len(data) for layer in layers for data in tree_layer.read_verified(layer).values())
        seconds = time.perf_counter() - started
        print(f"  {service:10s} {len(layers)} tree(s), {size / 1e6:6.1f} MB in {seconds * 1000:5.0f} ms "
              f"({seconds / single:.0%} of a no-change build of one service, {single:.2f} s)")

    runtime = records["keystone"]["bases"]["runtime_id"].removeprefix("sha256:")[:32]
    pyc = list(layout.bytecode().glob(f"{runtime}-v*/*/*.pyc"))
    started = time.perf_counter()
    size = 0
    for path in pyc:  # what ByteCode._read does for each module of a layer it makes
        data = path.read_bytes()
        size += len(data)
        hashlib.sha256(data[32:]).digest()
    seconds = time.perf_counter() - started
    print(f"  byte code: {len(pyc)} cached .pyc ({size / 1e6:.1f} MB) read and hashed in {seconds * 1000:.0f} ms "
          "(only when a layer is made)")

    keystone = records["keystone"]
    archive = entries[keystone["tree_layers"]["keystone"]["sha256"]].archive
    record_path = layout.image_record(release, "keystone")

    def rebuild() -> tuple[float, str]:
        record_path.unlink()
        seconds, _, err = cli("build", "--release", release, "--service", "keystone")
        return seconds, err

    intact, _ = rebuild()
    stat = archive.stat()
    with archive.open("r+b") as handle:
        handle.seek(stat.st_size // 2)
        handle.write(b"\xff" * 16)
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    damaged, err = rebuild()
    healed = sha256_file(archive) == keystone["tree_layers"]["keystone"]["sha256"]
    print(f"healing keystone's layer archive ({archive.stat().st_size / 1e6:.1f} MB): build with the archive intact "
          f"{intact:.1f} s, damaged {damaged:.1f} s ({damaged / intact:.2f}x; made again: "
          f"{'yes' if 'making it again' in err else 'NO'}, the recorded sha256 again: {'yes' if healed else 'NO'})")


if __name__ == "__main__":
    main()
