"""Stamps: the one mechanism that decides whether a step has work to do.

A step describes its inputs as JSON; the stamp stores the hash of those
inputs together with the tool's identity (its version and a hash of its own
code, so an upgraded tool never trusts a result an older one computed) and
the step's result.  A step is up to date when the hash matches and the
outputs it names still exist (the step checks those).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.core.files import hash_inputs, read_json, sha256_bytes, write_json

_PACKAGE = Path(__file__).resolve().parent.parent  # the pipeline package


@functools.cache
def tool_id() -> str:
    """``<version>+<hash of the pipeline's code>``: part of every stamp and input hash."""
    code = b"".join(p.read_bytes() for p in sorted(_PACKAGE.rglob("*.py")))
    return f"{__version__}+{sha256_bytes(code)[:12]}"


def input_hash(inputs: Any) -> str:
    return hash_inputs({"tool": tool_id(), "inputs": inputs})


class Stamp:
    """The record of one step's last successful run: its input hash and its result."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def current(self, inputs: Any) -> dict[str, Any] | None:
        """The stored result if the step last ran with exactly these inputs (and this tool)."""
        data = read_json(self.path)
        if isinstance(data, dict) and data.get("input_hash") == input_hash(inputs):
            result = data.get("result")
            return result if isinstance(result, dict) else None
        return None

    def record(self, inputs: Any, result: dict[str, Any]) -> None:
        write_json(self.path, {"tool": tool_id(), "input_hash": input_hash(inputs), "result": result})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
