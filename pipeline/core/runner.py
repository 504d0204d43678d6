"""The one step runner (build and testapply): named steps with dependencies, in topological order.

Steps whose dependencies are done run in parallel up to ``jobs``.  On a
failure, without ``keep_going`` no new step starts (running ones finish);
with it, only the failed step's dependents are skipped and every other step
runs.  The outcome lists each step as done, failed (with its error) or
skipped (with the step it waited for), for the per-item summary.  Whether a
step has work to do is the step's own business (stamps, records).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any


@dataclass
class Step:
    name: str
    run: Callable[[dict[str, Any]], Any]  # receives the results of all finished steps
    after: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class Outcome:
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, BaseException] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # step -> the failed step it depended on
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def status(self, name: str) -> str:
        if name in self.failures:
            return "failed"
        if name in self.skipped:
            return f"skipped ({self.skipped[name]} failed)"
        return "done" if name in self.results else "not run"


def run(steps: list[Step], jobs: int = 1, keep_going: bool = False) -> Outcome:
    by_name = {s.name: s for s in steps}
    dependents: dict[str, set[str]] = {s.name: set() for s in steps}
    for s in steps:
        for dep in s.after:
            dependents[dep].add(s.name)
    sorter = TopologicalSorter({s.name: s.after for s in steps})
    sorter.prepare()
    outcome = Outcome()
    stop = False

    def blocked_by(name: str) -> str | None:
        for dep in by_name[name].after:
            if dep in outcome.failures:
                return dep
            if dep in outcome.skipped:
                return outcome.skipped[dep]
        return None

    def timed(step: Step) -> Any:
        started = time.monotonic()
        try:
            return step.run(outcome.results)
        finally:
            outcome.seconds[step.name] = time.monotonic() - started

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    running: dict[Future[Any], str] = {}
    try:
        while sorter.is_active():
            if not stop:
                for name in sorter.get_ready():
                    cause = blocked_by(name)
                    if cause is not None:
                        outcome.skipped[name] = cause
                        sorter.done(name)
                        continue
                    running[pool.submit(timed, by_name[name])] = name
            if not running:
                if stop or not sorter.is_active():
                    break
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                error = future.exception()
                if error is not None:
                    outcome.failures[name] = error
                    stop = stop or not keep_going
                else:
                    outcome.results[name] = future.result()
                sorter.done(name)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: do not wait for running steps
        raise
    pool.shutdown(wait=True)
    for name in by_name:
        if name not in outcome.results and name not in outcome.failures and name not in outcome.skipped:
            outcome.skipped[name] = next(iter(outcome.failures), "an earlier step")
    return outcome
