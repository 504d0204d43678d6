"""What the user sees: results on stdout, progress and messages on stderr.

stdout carries only the result of a command (a table, or with ``--format
json`` nothing but the JSON), so it can be piped; every step line, live
progress line, warning and error goes to stderr.  On a terminal a live
progress line is rewritten in place; elsewhere (CI logs) it is printed at
most every few seconds.  Everything printed passes through ``redact``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pipeline.core.redact import redact

_lock = threading.RLock()
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Za-z0-9]|\r")
NON_TTY_INTERVAL = 5.0


def strip_ansi(text: str) -> str:
    """Plain text for log files: terminal colour and cursor codes removed."""
    return _ANSI.sub("", text)


def _is_tty() -> bool:
    return sys.stderr.isatty()


class _Live:
    """The one live line on stderr; other output clears it first."""

    text = ""

    @classmethod
    def clear(cls) -> None:
        if cls.text and _is_tty():
            sys.stderr.write("\r\x1b[2K")
        cls.text = ""


def _err(line: str) -> None:
    with _lock:
        _Live.clear()
        sys.stderr.write(redact(line) + "\n")
        sys.stderr.flush()


def result(text: str) -> None:
    """The command's result, on stdout."""
    with _lock:
        _Live.clear()
        sys.stdout.write(redact(text) + "\n")
        sys.stdout.flush()


def result_json(data: Any) -> None:
    result(json.dumps(data, indent=2, sort_keys=False))


def note(message: str) -> None:
    _err(message)


def warn(message: str) -> None:
    _err(f"warning: {message}")


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A warning that would repeat for every image of a run (the same cause): said once per process."""
    if message not in _warned:
        _warned.add(message)
        warn(message)


def report_error(error: object) -> None:
    _err(f"error: {error}")


class Progress:
    """A live progress line: ``update`` often, it prints only what a reader can follow."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self._last_print = 0.0

    def update(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        line = redact(f"  [{self.label}] {text} ({elapsed:.0f}s)")
        with _lock:
            if _is_tty():
                width = 160
                sys.stderr.write("\r\x1b[2K" + line[:width])
                sys.stderr.flush()
                _Live.text = line
            elif time.monotonic() - self._last_print >= NON_TTY_INTERVAL:
                self._last_print = time.monotonic()
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    def done(self) -> None:
        with _lock:
            _Live.clear()


@contextmanager
def step(label: str) -> Iterator[dict[str, str]]:
    """``label ...`` then ``label: <status> (1.2s)`` on stderr; the body may set ``status``."""
    started = time.monotonic()
    outcome = {"status": "done"}
    _err(f"{label} ...")
    try:
        yield outcome
    except BaseException:
        _err(f"{label}: failed ({time.monotonic() - started:.1f}s)")
        raise
    _err(f"{label}: {outcome['status']} ({time.monotonic() - started:.1f}s)")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
