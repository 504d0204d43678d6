"""Stamps: persisted hashes of each step's inputs, and atomic file output.

A step is up to date when its stamp holds the same input hash and the
outputs it names still exist; then a rerun does no work at all.  All files
the pipeline writes go through ``write_atomic`` so an interrupted run never
leaves a half-written record behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_inputs(inputs: Any) -> str:
    """Stable hash of a JSON-serialisable description of a step's inputs."""
    return sha256_bytes(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode())


def write_atomic(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class Stamp:
    """The record of one step's last successful run: its input hash and its result."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def current(self, input_hash: str) -> dict[str, Any] | None:
        """The stored result if the step last ran with exactly these inputs."""
        data = read_json(self.path)
        if isinstance(data, dict) and data.get("input_hash") == input_hash:
            return data.get("result")
        return None

    def record(self, input_hash: str, result: dict[str, Any]) -> None:
        write_json(self.path, {"input_hash": input_hash, "result": result})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def replace_dir(dest: Path, build: Callable[[Path], None]) -> None:
    """Build a directory next to ``dest`` with ``build(path)``, then swap it in.

    No half-made directory is ever visible at ``dest``: if ``build`` fails,
    the previous content (or nothing) stays.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.new."))
    try:
        build(staging / "new")
        if dest.exists():
            dest.rename(staging / "old")
        (staging / "new").rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
