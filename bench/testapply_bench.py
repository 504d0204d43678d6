"""testapply's per-patch test selection (the import graph), measured on real suites in one run.

Part 1, cost: `invoke testapply --component keystone` on the shipped 2025.2
series (3 patches, keystone's real suite).  The run itself gives the time of
the selected tests after each patch and of the whole suite at the end, so
the ratio "selection after each patch / the whole suite after each patch"
is taken in one run (target <= 25 %).

Part 2, recall: on oslo.messaging 2025.2 (its real suite), small breaking
mutations of source modules (a function's return value replaced by None, or
a comparison inverted), chosen by a fixed seed; a mutation counts when some
existing test fails (the selected tests, else the whole suite, decide).  For
each, does the selection for that change contain a failing test?  Target:
at least 95 % of at least 20 breaking mutations.
Run: python bench/testapply_bench.py [--mutations 20] [--skip-cost]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.impact import ImportGraph, is_test_module, selector_regex  # noqa: E402


def invoke(*args: str) -> str:
    result = subprocess.run(["invoke", "-r", str(ROOT), *args, "--format", "json"], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"invoke {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def cost() -> list[str]:
    report = json.loads(invoke("testapply", "--release", "2025.2", "--component", "keystone"))[0]
    steps = report["steps"]
    per_patch = [s for s in steps if s["patch"] != "(end of series)"]
    full = next(s for s in steps if s["patch"] == "(end of series)")
    selected = sum(s["seconds"] for s in per_patch)
    ratio = selected / (len(per_patch) * full["seconds"])
    lines = ["keystone 2025.2, 3 patches, real suite:"]
    for s in per_patch:
        t = s["tests"] or {}
        ran = sum(t.get(k, 0) for k in ("passed", "failed", "skipped", "xfail"))
        lines.append(f"  {s['patch'][:60]:60s} {s['selection']:32s} {ran:5d} tests {s['seconds']:7.1f} s")
    t = full["tests"]
    lines.append(f"  whole suite at the end: {t['passed'] + t['skipped'] + t['xfail']} tests, {full['seconds']:.1f} s")
    lines.append(f"  selection after each patch: {selected:.1f} s; whole suite after each patch would be "
                 f"{len(per_patch)} x {full['seconds']:.1f} s; ratio {ratio:.1%} (target <= 25 %)")
    return lines


class Mutation:
    def __init__(self, path: Path, line: int, old: str, new: str) -> None:
        self.path, self.line, self.old, self.new = path, line, old, new


def candidates(tree: Path, package: str) -> list[Mutation]:
    found = []
    for path in sorted((tree / package).rglob("*.py")):
        rel = path.relative_to(tree)
        if "tests" in rel.parts:
            continue
        source = path.read_text()
        lines = source.splitlines()
        try:
            parsed = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(parsed):
            if isinstance(node, ast.Return) and node.value is not None and node.lineno == node.end_lineno:
                text = lines[node.lineno - 1]
                if re.match(r"^\s*return\s+\S", text) and "None" not in text:
                    found.append(Mutation(path, node.lineno, text, re.sub(r"return\s+.*$", "return None", text)))
            elif isinstance(node, ast.Compare) and len(node.ops) == 1 and node.lineno == node.end_lineno:
                text = lines[node.lineno - 1]
                op = {ast.Eq: " == ", ast.NotEq: " != "}.get(type(node.ops[0]))
                if op and text.count(op) == 1:
                    found.append(Mutation(path, node.lineno, text, text.replace(op, " != " if op == " == " else " == ")))
    return found


def run_tests(tree: Path, venv: Path, selector: str | None) -> tuple[bool, int]:
    """(some test failed, tests run)."""
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    args = [str(venv / "bin" / "stestr"), "run", "--subunit"] + ([selector] if selector else [])
    proc = subprocess.run(args, cwd=tree, env=env, capture_output=True)
    from pipeline.testapply import SUBUNIT_SCRIPT

    parsed = subprocess.run([str(venv / "bin" / "python"), "-c", SUBUNIT_SCRIPT], input=proc.stdout,
                            capture_output=True, env=env)
    cases = json.loads(parsed.stdout or b"[]")
    failed = any(c["status"] in ("fail", "uxsuccess") for c in cases)
    return failed or (proc.returncode != 0 and not cases), len(cases)


def recall(count: int) -> list[str]:
    invoke("testapply", "--release", "2025.2", "--component", "oslo.messaging", "--defer-tests")
    tree = ROOT / "build" / "testapply" / "2025.2" / "oslo.messaging" / "tree"
    from pipeline.config import Settings

    venvs = Settings.from_mapping({}).layout.test_venvs()
    record = json.loads((venvs / "2025.2-oslo.messaging.json").read_text())
    venv = Path(record["result"]["venv"])
    graph = ImportGraph.of(tree)
    pool = candidates(tree, "oslo_messaging")
    random.Random(20261203).shuffle(pool)
    breaking, hits, attempts, selected_total = 0, 0, 0, 0
    lines = []
    graph.refresh()
    all_tests = [m for m in graph.importers if is_test_module(m)]
    for mutation in pool:
        if breaking >= count:
            break
        attempts += 1
        original = mutation.path.read_text()
        lines_of = original.splitlines(keepends=True)
        lines_of[mutation.line - 1] = mutation.new + "\n"
        mutation.path.write_text("".join(lines_of))
        try:
            rel = str(mutation.path.relative_to(tree))
            selected = graph.impacted([rel])
            caught, ran = run_tests(tree, venv, selector_regex(selected)) if selected else (False, 0)
            if caught:
                breaking += 1
                hits += 1
                selected_total += len(selected)
                lines.append(f"  caught  {rel}:{mutation.line} ({len(selected)} of {len(all_tests)} test modules, {ran} tests)")
                continue
            broke, _ = run_tests(tree, venv, None)
            if broke:
                breaking += 1
                lines.append(f"  MISSED  {rel}:{mutation.line} ({len(selected)} modules selected)")
        finally:
            mutation.path.write_text(original)
    summary = [f"oslo.messaging 2025.2: {breaking} breaking mutations of {attempts} tried;",
               f"  recall {hits}/{breaking} = {hits / max(breaking, 1):.0%} (target >= 95 %), "
               f"on average {selected_total / max(hits, 1):.0f} of {len(all_tests)} test modules selected"]
    return summary + lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutations", type=int, default=20)
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    out = [] if args.skip_cost else cost()
    out += recall(args.mutations)
    out.append(f"(bench took {time.perf_counter() - started:.0f} s)")
    print("\n".join(out))


if __name__ == "__main__":
    main()
