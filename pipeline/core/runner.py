"""The one step runner: named steps with dependencies, in topological order.

Build, testapply, smoke and every stage that runs things side by side use it.

Steps whose dependencies are done run in parallel up to ``jobs``.  On a
failure, without ``keep_going`` no new step starts (running ones finish);
with it, only the failed step's dependents are skipped and every other step
runs.  The outcome lists each step as done, failed (with its error) or
skipped (with the step it waited for), for the per-item summary.  Whether a
step has work to do is the step's own business (stamps, records).

A step marked ``io`` waits on git or the network, not the CPU: up to
``IO_WIDTH`` of them run at once even with ``jobs`` 1.  An ``inline`` step runs
in the caller's thread (taking and dropping a lock that a ``with`` in the
caller owns, which a worker thread could not release).  ``map`` runs one
function over items as steps, for stages that have no graph of their own.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
IO_WIDTH = 4


@dataclass
class Step:
    name: str
    run: Callable[[dict[str, Any]], Any]  # receives the results of all finished steps
    after: tuple[str, ...] = field(default_factory=tuple)
    io: bool = False
    inline: bool = False


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

    def finished(name: str, error: BaseException | None, result: Any = None) -> None:
        nonlocal stop
        if error is not None:
            outcome.failures[name] = error
            stop = stop or not keep_going
        else:
            outcome.results[name] = result
        sorter.done(name)

    jobs = max(1, jobs)
    widths = {False: jobs, True: max(jobs, IO_WIDTH)}
    pool = ThreadPoolExecutor(max_workers=jobs + (widths[True] if any(s.io for s in steps) else 0))
    running: dict[Future[Any], str] = {}
    waiting: list[str] = []  # ready, in order, for a free slot of their kind
    try:
        while sorter.is_active():
            if not stop:
                waiting += sorter.get_ready()
                for name in list(waiting):
                    step = by_name[name]
                    cause = blocked_by(name)
                    if cause is not None:
                        waiting.remove(name)
                        outcome.skipped[name] = cause
                        sorter.done(name)
                    elif step.inline:
                        waiting.remove(name)
                        try:
                            result = timed(step)
                        except (KeyboardInterrupt, SystemExit):
                            raise
                        except BaseException as failure:  # noqa: BLE001 - kept as a worker's future keeps it
                            finished(name, failure)
                        else:
                            finished(name, None, result)
                    elif sum(by_name[n].io == step.io for n in running.values()) < widths[step.io]:
                        waiting.remove(name)
                        running[pool.submit(timed, step)] = name
                if not running and sorter.is_active() and not stop:
                    continue  # an inline step finished: its dependents may be ready
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                error = future.exception()
                finished(name, error, None if error is not None else future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: do not wait for running steps
        raise
    pool.shutdown(wait=True)
    for name in by_name:
        if name not in outcome.results and name not in outcome.failures and name not in outcome.skipped:
            outcome.skipped[name] = next(iter(outcome.failures), "an earlier step")
    return outcome


def map(function: Callable[[T], R], items: list[T], jobs: int = 1, name: Callable[[T], str] = str,
        io: bool = False) -> list[R]:
    """``function`` of each item, as independent steps; the results in item order, or the first item's error."""
    steps = [Step(f"{i}:{name(item)}", functools.partial(_call, function, item), io=io) for i, item in enumerate(items)]
    outcome = run(steps, jobs)
    for step in steps:
        if step.name in outcome.failures:
            raise outcome.failures[step.name]
    return [outcome.results[step.name] for step in steps]


def _call(function: Callable[[T], R], item: T, _: dict[str, Any]) -> R:
    """A step of ``map``: the function of its item (the results of other steps are not its business)."""
    return function(item)
