"""Time invoke advisories on the six images of 2025.2 and patches.candidates on a keystone-sized history.

advisories: the records of the images built in --workdir (image.json and the
SBOM of each 2025.2 service; build them first with
`invoke build --release 2025.2 --all`) are copied into a scratch work
directory, and the real CLI assesses them against the advisory snapshots,
read as local folders and as a git source (a repository made of the
snapshots, reached by file://): cold (no parsed-document cache, every VEX
written) and warm (median of three; nothing changed: no VEX written).

patches.candidates: keystone's history is out of reach here (opendev), so it
is made to its size: the real keystone 28.0.0 sdist tree, --old commits
before the 2025.2 branch point, --new commits on master after it (40 % with
Closes-Bug, 3 % naming a CVE, each one line into a real module), the
stable/2025.2 branch with -x backports before and after the 28.0.0 tag,
stable/2026.1 cut half-way with its own backports; the release carries the
shipped keystone series.  Timed: the first run (the mirror fetches the
whole history) and warm runs (median of three).
Run: python bench/advisories_bench.py [--workdir build] [--snapshots ../shared/advisories] [--old 15000] [--new 600]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org", "-c", "init.defaultBranch=master"]


def timed(env: dict, *cli: str, expect: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(["invoke", "-r", str(ROOT), *cli], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in expect:
        sys.exit(f"invoke {' '.join(cli)}: exit {done.returncode}\n{done.stderr}")
    return seconds


def bench_advisories(workdir: Path, snapshots: Path, scratch: Path) -> list[tuple[str, float]]:
    services = ["nova", "neutron", "keystone", "glance", "cinder", "placement"]
    copy = scratch / "build"
    for service in services:
        source = workdir / "2025.2" / service
        if not (source / "image.json").exists() or not (source / "sbom.cdx.json").exists():
            sys.exit(f"{source} has no image record or SBOM: invoke build --release 2025.2 --all first")
        (copy / "2025.2" / service).mkdir(parents=True)
        for name in ("image.json", "sbom.cdx.json", "sbom.json"):
            shutil.copy2(source / name, copy / "2025.2" / service / name)
    repo = scratch / "ossa-repo"
    shutil.copytree(snapshots / "ossa", repo / "ossa")
    subprocess.run([*GIT, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "advisories"], cwd=repo, check=True)
    results = []
    for label, ossa in (("folders", str(snapshots / "ossa")), ("git source (file://)", repo.as_uri())):
        env = {**os.environ, "INVOKE_PIPELINE_WORKDIR": str(copy), "INVOKE_PIPELINE_CACHE_DIR": str(scratch / f"cache-{len(results)}"),
               "INVOKE_PIPELINE_OSSA": ossa, "INVOKE_PIPELINE_PYPA_ADVISORIES": str(snapshots / "pypa" / "vulns")}
        for service in services:
            for name in ("vex.cdx.json", "vex.json"):
                (copy / "2025.2" / service / name).unlink(missing_ok=True)
        results.append((f"advisories --release 2025.2, 6 images, {label}: cold (fetch, parse, 6 VEX written)",
                        timed(env, "advisories", "--release", "2025.2")))
        warm = [timed(env, "advisories", "--release", "2025.2") for _ in range(3)]
        results.append((f"advisories --release 2025.2, 6 images, {label}: warm (median of 3)", statistics.median(warm)))
    return results


def keystone_sdist(cache: Path, scratch: Path) -> Path:
    archive = cache / "sdist" / "keystone-28.0.0.tar.gz"
    if not archive.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "keystone==28.0.0", "-d", str(scratch)], check=True)
        archive = scratch / "keystone-28.0.0.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(scratch / "sdist", filter="data")
    return scratch / "sdist" / "keystone-28.0.0"


class History:
    """Commits written with git fast-import: one line into a module per commit."""

    def __init__(self, repo: Path, tree: Path, avoid: set[str]) -> None:
        self.repo = repo
        self.files = {str(p.relative_to(tree)): p.read_text(errors="replace").split("\n")
                      for p in sorted(tree.rglob("*")) if p.is_file() and ".egg-info" not in str(p)}
        self.modules = [f for f in self.files if f.startswith("keystone/") and f.endswith(".py") and f not in avoid
                        and "/tests/" not in f and len(self.files[f]) > 40]
        self.stream: list[bytes] = []
        self.mark = 0
        self.when = 1_600_000_000
        self.random = random.Random(2025)

    def _commit(self, branch: str, message: str, changes: dict[str, list[str]], parent: str | None) -> str:
        self.mark += 1
        self.when += 600
        data = message.encode()
        out = [f"commit refs/heads/{branch}\nmark :{self.mark}\n".encode(),
               f"author Dev <dev@example.org> {self.when} +0000\ncommitter Dev <dev@example.org> {self.when} +0000\n".encode(),
               f"data {len(data)}\n".encode() + data + b"\n"]
        if parent:
            out.append(f"from {parent}\n".encode())
        for path, lines in changes.items():
            blob = "\n".join(lines).encode()
            out.append(f"M 100644 inline {path}\ndata {len(blob)}\n".encode() + blob + b"\n")
        self.stream.append(b"".join(out) + b"\n")
        return f":{self.mark}"

    def initial(self) -> str:
        return self._commit("master", "Initial import of keystone 28.0.0\n", self.files, None)

    def change(self, branch: str, number: int, parent: str | None, state: dict, message: str) -> tuple[str, dict]:
        path = self.random.choice(self.modules)
        lines = list(state.get(path, self.files[path]))
        at = self.random.randrange(10, len(lines) - 5)
        lines.insert(at, f"# change {number}: keep this in line with the rest of the module")
        state = {**state, path: lines}
        return self._commit(branch, message, {path: lines}, parent), state

    def run(self) -> None:
        subprocess.run(["git", "fast-import", "--quiet"], cwd=self.repo, input=b"".join(self.stream), check=True)
        self.stream = []


def message(rng: random.Random, n: int) -> str:
    """Upstream's shape: subject, body, trailers; 40 % close a bug, 3 % name a CVE."""
    kind = rng.random()
    subject = f"Fix the handling of case {n} in the module" if kind < 0.43 else f"Refactor part {n} of the module"
    if kind < 0.03:
        subject += f" (CVE-2026-{40000 + n})"
    trailers = (f"Closes-Bug: #{3000000 + n}\n" if kind < 0.43 else "") + f"Change-Id: I{n:040x}\n"
    return f"{subject}\n\nA description of change {n}.\n\n{trailers}"


def bench_candidates(old: int, new: int, cache: Path, snapshots: Path, scratch: Path) -> list[tuple[str, float]]:
    tree = keystone_sdist(cache, scratch)
    upstream = scratch / "upstream" / "keystone"
    upstream.mkdir(parents=True)
    subprocess.run([*GIT, "init", "-q"], cwd=upstream, check=True)
    series = sorted((ROOT / "patches" / "keystone" / "2025.2").glob("*.patch"))
    avoid = {line.split(" b/", 1)[1] for p in series for line in p.read_text().splitlines() if line.startswith("diff --git ")}
    history = History(upstream, tree, avoid)
    rng = random.Random(7)
    head = history.initial()
    state: dict = {}
    for n in range(old):  # before the branch point: reachable from the ref, never candidates (one small file each)
        head = history._commit("master", f"Old change {n}\n\nChange-Id: I{n + 10**6:040x}\n",
                               {f"doc/source/history/{n % 50}.rst": [f"Old change {n}", ""]}, head)
        if n % 2000 == 1999:
            history.run()
            head = "refs/heads/master^0"
    history.run()
    subprocess.run([*GIT, "tag", "-a", "-m", "28.0.0.0rc1", "28.0.0.0rc1", "master"], cwd=upstream, check=True)
    subprocess.run([*GIT, "branch", "stable/2025.2", "master"], cwd=upstream, check=True)
    master_state, cut_state, messages = dict(state), dict(state), []
    head = "refs/heads/master^0"
    cut = new // 2
    for n in range(new):
        messages.append(message(rng, n))
        head, master_state = history.change("master", n, head, master_state, messages[-1])
        if n == cut:
            history.run()
            for command in (["tag", "-a", "-m", "29.0.0.0rc1", "29.0.0.0rc1", "master"], ["branch", "stable/2026.1", "master"]):
                subprocess.run([*GIT, *command], cwd=upstream, check=True)
            head, cut_state = "refs/heads/master^0", dict(master_state)
    history.run()
    shas = subprocess.run(["git", "rev-list", "--reverse", "28.0.0.0rc1..master"], cwd=upstream, capture_output=True,
                          text=True, check=True).stdout.split()
    # Backports: -x copies of master commits on the stable branches, 13 of them before the 28.0.0 tag.
    head, stable_state = "refs/heads/stable/2025.2^0", dict(state)
    for i, n in enumerate(sorted(random.Random(11).sample(range(cut), 40))):
        picked = f"{messages[n]}(cherry picked from commit {shas[n]})\n"
        head, stable_state = history.change("stable/2025.2", n, head, stable_state, picked)
        if i == 12:
            history.run()
            subprocess.run([*GIT, "tag", "-a", "-m", "28.0.0", "28.0.0", "stable/2025.2"], cwd=upstream, check=True)
            head = "refs/heads/stable/2025.2^0"
    history.run()
    head = "refs/heads/stable/2026.1^0"
    for n in sorted(random.Random(12).sample(range(cut + 1, new), 20)):
        head, cut_state = history.change("stable/2026.1", n, head, cut_state,
                                         f"{messages[n]}(cherry picked from commit {shas[n]})\n")
    history.run()
    project = scratch / "project"
    (project / "releases" / "2025.2").mkdir(parents=True)
    (project / "releases" / "2025.2" / "source-refs.yaml").write_text('keystone: "28.0.0"\n')
    (project / "releases" / "2025.2" / "release.yaml").write_text("services: [keystone]\n")
    shutil.copytree(ROOT / "patches" / "keystone" / "2025.2", project / "patches" / "keystone" / "2025.2")
    count = subprocess.run(["git", "rev-list", "--count", "--all"], cwd=upstream, capture_output=True, text=True,
                           check=True).stdout.strip()
    env = {**os.environ, "INVOKE_PIPELINE_ROOT": str(project), "INVOKE_PIPELINE_WORKDIR": str(project / "build"),
           "INVOKE_PIPELINE_CACHE_DIR": str(scratch / "cache"), "INVOKE_PIPELINE_GIT_BASE": str(upstream.parent),
           "INVOKE_PIPELINE_SOURCE_MODE": "git", "INVOKE_PIPELINE_OSSA": str(snapshots / "ossa"),
           "INVOKE_PIPELINE_PYPA_ADVISORIES": str(snapshots / "pypa" / "vulns")}
    results = [(f"patches.candidates keystone, {count} commits: first run (whole history fetched into the mirror)",
                timed(env, "patches.candidates", "--release", "2025.2", "--component", "keystone"))]
    warm = [timed(env, "patches.candidates", "--release", "2025.2", "--component", "keystone") for _ in range(3)]
    results.append((f"patches.candidates keystone, {count} commits: warm (median of 3)", statistics.median(warm)))
    out = subprocess.run(["invoke", "-r", str(ROOT), "patches.candidates", "--release", "2025.2", "--component",
                          "keystone", "--format", "json"], env=env, capture_output=True, text=True, check=True).stdout
    found = json.loads(out)["candidates"]
    kinds = {k: sum(c["kind"] == k for c in found) for k in ("advisory fix", "security", "bug fix")}
    applies = {a: sum(c["applies"].split(" in ")[0] == a for c in found)
               for a in ("applies", "applies with a 3-way merge", "conflicts")}
    print(f"candidates: {len(found)} ({kinds}); {applies}", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=str(ROOT / "build"), help="work directory holding the 2025.2 images' records")
    parser.add_argument("--snapshots", default=str(ROOT.parent / "shared" / "advisories"),
                        help="folder with ossa/ and pypa/vulns/ (the snapshots of the two repositories)")
    parser.add_argument("--cache", default=str(Path("~/.cache/openstack-patches").expanduser()),
                        help="cache_dir holding keystone's 28.0.0 sdist (downloaded when missing)")
    parser.add_argument("--old", type=int, default=15000, help="commits before the 2025.2 branch point")
    parser.add_argument("--new", type=int, default=600, help="commits on master after it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="advisories-bench-") as scratch:
        results = bench_advisories(Path(args.workdir), Path(args.snapshots), Path(scratch))
        results += bench_candidates(args.old, args.new, Path(args.cache), Path(args.snapshots), Path(scratch))
    width = max(len(label) for label, _ in results)
    for label, seconds in results:
        print(f"{label.ljust(width)}  {seconds:6.2f} s")


if __name__ == "__main__":
    main()
