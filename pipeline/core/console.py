"""What the user sees: results on stdout, progress and messages on stderr.

stdout carries only the result of a command (a table, or with ``--format
json`` nothing but the JSON), so it can be piped: a command's result is a
``Report`` (its JSON, and its tables and lines) and ``show`` is the one
printer that writes either.  Every step line, live
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Column:
    """A column of a table: its header, and the row's key it shows or how its cell is made from the row."""

    header: str
    cell: str | Callable[[Mapping[str, Any]], object] = ""

    def shown(self, row: Mapping[str, Any]) -> object:
        if callable(self.cell):
            return self.cell(row)
        return row[self.cell or self.header]


@dataclass(frozen=True)
class Table:
    """Rows (mappings, as the JSON has them) and the columns a reader sees of them."""

    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]]
    empty: str | None = None  # the text instead of a table without rows (None: the headers alone)
    title: str = ""  # a line above the table
    footer: str = ""  # lines below it

    def text(self) -> str:
        if not self.rows and self.empty is not None:
            text = self.empty
        else:
            text = table([c.header for c in self.columns], [[c.shown(row) for c in self.columns] for row in self.rows])
        return "\n".join(part for part in (self.title, text, self.footer) if part)


Part = Table | str


@dataclass(frozen=True)
class Report:
    """A command's result: ``data`` is its JSON; ``parts`` (tables and lines, in order) are what the table shows."""

    data: Any
    parts: Sequence[Part]

    @classmethod
    def of(cls, columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], **table: Any) -> Report:
        """The common report: its rows are its JSON, and one table shows them."""
        return cls(rows, [Table(columns, rows, **table)])

    def text(self) -> str:
        return "\n".join(part.text() if isinstance(part, Table) else part for part in self.parts)


def show(report: Report, fmt: str) -> None:
    """The one printer: the report's JSON with ``--format json``, else its tables and lines."""
    if fmt == "json":
        result_json(report.data)
    else:
        result(report.text())
