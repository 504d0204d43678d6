"""A small DAG runner: named steps with dependencies, run in topological order.

Steps whose dependencies are done run in parallel up to ``jobs``; the first
failure stops scheduling and is re-raised once running steps finish.  Whether
a step has work to do is the step's own business (stamps, build records).
"""

from __future__ import annotations

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


def run(steps: list[Step], jobs: int = 1) -> dict[str, Any]:
    by_name = {s.name: s for s in steps}
    sorter = TopologicalSorter({s.name: s.after for s in steps})
    sorter.prepare()
    results: dict[str, Any] = {}
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        running: dict[Future, str] = {}
        while sorter.is_active() and failure is None:
            for name in sorter.get_ready():
                running[pool.submit(by_name[name].run, results)] = name
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                if future.exception() is not None:
                    failure = failure or future.exception()
                else:
                    results[name] = future.result()
                    sorter.done(name)
        wait(running)
    if failure is not None:
        raise failure
    return results
