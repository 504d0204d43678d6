"""What the user sees: concise step lines, tables and error reports.

Stages call these instead of ``print`` so that output stays uniform and a
long step always says what it is doing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .errors import PipelineError


def info(message: str) -> None:
    print(message, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


@contextmanager
def step(label: str) -> Iterator[dict[str, str]]:
    """Print ``label ...`` then ``label: <status> (1.2s)``; the body may set ``status``."""
    started = time.monotonic()
    outcome = {"status": "done"}
    print(f"{label} ...", flush=True)
    try:
        yield outcome
    except BaseException:
        print(f"{label}: failed ({time.monotonic() - started:.1f}s)", flush=True)
        raise
    print(f"{label}: {outcome['status']} ({time.monotonic() - started:.1f}s)", flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report_error(error: PipelineError | str) -> None:
    print(f"error: {error}", file=sys.stderr, flush=True)
