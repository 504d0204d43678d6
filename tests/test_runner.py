"""The one step runner: dependencies, keep-going, inline and I/O steps, map."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.core import runner
from pipeline.core.errors import FetchError


def test_dependents_of_a_failure_are_skipped_and_the_rest_runs_with_keep_going():
    def fail(_):
        raise FetchError("no")

    steps = [runner.Step("a", fail), runner.Step("b", lambda r: 1, ("a",)), runner.Step("c", lambda r: 2),
             runner.Step("d", lambda r: r["c"] + 1, ("c",))]
    outcome = runner.run(steps, jobs=2, keep_going=True)
    assert isinstance(outcome.failures["a"], FetchError)
    assert outcome.status("b") == "skipped (a failed)"
    assert outcome.results == {"c": 2, "d": 3}


def test_inline_steps_run_in_the_callers_thread_in_order():
    seen = []
    caller = threading.get_ident()
    steps = [runner.Step("take", lambda r: seen.append(("take", threading.get_ident())), inline=True),
             runner.Step("work", lambda r: seen.append(("work", threading.get_ident())), ("take",)),
             runner.Step("drop", lambda r: seen.append(("drop", threading.get_ident())), ("work",), inline=True)]
    outcome = runner.run(steps, jobs=1)
    assert outcome.ok
    assert [s for s, _ in seen] == ["take", "work", "drop"]
    assert seen[0][1] == caller and seen[2][1] == caller and seen[1][1] != caller


def test_io_steps_run_a_few_at_once_with_one_job():
    active, peak, guard = [0], [0], threading.Lock()

    def wait(_):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with guard:
            active[0] -= 1

    steps = [runner.Step(f"io{i}", wait, io=True) for i in range(8)] + [runner.Step(f"cpu{i}", wait) for i in range(3)]
    assert runner.run(steps, jobs=1).ok
    assert peak[0] == runner.IO_WIDTH + 1  # the I/O steps, and one CPU step


def test_map_keeps_item_order_and_raises_the_first_items_error():
    assert runner.map(lambda x: x * 2, [3, 1, 2], jobs=2) == [6, 2, 4]

    def odd(x):
        if x % 2:
            raise FetchError(f"odd {x}")
        return x

    with pytest.raises(FetchError, match="odd 1"):
        runner.map(odd, [2, 1, 3], jobs=1)
