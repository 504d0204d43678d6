"""Files the pipeline writes: atomic, with the process umask, and swapped-in directories.

No reader ever sees a half-written record or a half-made tree: files are
written next to their destination and renamed; trees are built in a staging
directory and swapped in.  Staging directories that a killed run left behind
are recognised by their prefix and removed by the next run that holds the
lock of their parent (see ``locks``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import console
from pipeline.core.errors import DiskFullError

STAGING_PREFIX = ".staging-"
_PLACES: dict[Path, str] = {}  # the run's directories and what they are, for messages


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _process_umask()  # read once at import, before any thread starts


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
    return sha256_bytes(json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str).encode())


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (they are delivered right after): a swap or a teardown
    never stops half-way."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def write_atomic(path: Path, data: str | bytes, mode: int = 0o666) -> None:
    """Write ``path`` whole or not at all, with permissions ``mode`` less the umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_if_changed(path: Path, data: str | bytes) -> bool:
    """Write only when the content differs (a no-change run writes nothing)."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if path.read_bytes() == raw:
            return False
    except (FileNotFoundError, NotADirectoryError):
        pass
    write_atomic(path, raw)
    return True


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or not valid JSON (a torn or foreign file)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def remove(path: Path) -> None:
    """Remove a file or a directory tree if it exists."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path)


def replace_dir(dest: Path, build: Callable[[Path], object]) -> None:
    """Build a directory next to ``dest`` with ``build(path)``, then swap it in.

    If ``build`` fails or the process is killed, ``dest`` keeps its previous
    content (or stays absent); the staging directory is removed, or by the
    next run after a kill.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f"{STAGING_PREFIX}{dest.name}."))
    try:
        build(staging / "new")
        if dest.exists():
            dest.rename(staging / "old")
        (staging / "new").rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class TreeSync:
    """What a sync changed in the copy, as paths relative to it."""

    written: tuple[str, ...]
    removed: tuple[str, ...]


def sync_tree(source: Path, dest: Path, keep: tuple[str, ...] = ()) -> TreeSync:
    """Make ``dest`` an exact copy of ``source`` (files, modes, symlinks, nothing else).

    Only what differs is written, by content: a tree that is made again
    whole (a prepared tree is) but changed in two files costs two writes and
    reads of the rest, not a copy of every file.  A sync that was killed
    leaves a tree the next sync repairs, since nothing is trusted but content.
    Top-level names in ``keep`` that ``source`` lacks are left as they are.
    ``removed`` names every path whose entry in ``dest`` was deleted (gone
    from ``source``, or replaced: another kind, another link target), with
    everything that was below it.
    """
    written: list[str] = []
    removed: list[str] = []
    kept = {name for name in keep if not os.path.lexists(source / name)}
    dest.mkdir(parents=True, exist_ok=True)

    def delete(entry: os.DirEntry[str], path: str) -> None:
        if entry.is_dir(follow_symlinks=False):
            for directory, dirs, files in os.walk(entry.path, topdown=False):
                rel = os.path.relpath(directory, dest)
                removed.extend(os.path.join(rel, name) for name in [*files, *dirs])
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
        removed.append(path)

    def sync(src_dir: str, dst_dir: str, rel: str) -> None:
        # One scandir a side: an entry's kind comes with it, so a file costs one stat a side.
        with os.scandir(dst_dir) as listing:
            present = {entry.name: entry for entry in listing}
        with os.scandir(src_dir) as listing:
            entries = list(listing)
        for entry in entries:
            path = os.path.join(rel, entry.name) if rel else entry.name
            dst_path = os.path.join(dst_dir, entry.name)
            old = present.pop(entry.name, None)
            if entry.is_symlink():
                target = os.readlink(entry.path)
                if old is not None and not (old.is_symlink() and os.readlink(old.path) == target):
                    delete(old, path)
                    old = None
                if old is None:
                    os.symlink(target, dst_path)
                    written.append(path)
                continue
            mode = entry.stat(follow_symlinks=False).st_mode & 0o7777
            if entry.is_dir(follow_symlinks=False):
                if old is not None and not old.is_dir(follow_symlinks=False):
                    delete(old, path)
                    old = None
                if old is None:
                    os.mkdir(dst_path)
                sync(entry.path, dst_path, path)
            else:
                if old is not None and not old.is_file(follow_symlinks=False):
                    delete(old, path)
                    old = None
                elif old is not None and not _same_bytes(entry, old):
                    os.unlink(old.path)  # a new inode: whoever reads (or links) the old file keeps its bytes whole
                    old = None
                if old is None:
                    shutil.copyfile(entry.path, dst_path)
                    written.append(path)
            if old is None or old.stat(follow_symlinks=False).st_mode & 0o7777 != mode:
                os.chmod(dst_path, mode)
        for name, old in present.items():
            if not (rel == "" and name in kept):
                delete(old, os.path.join(rel, name) if rel else name)

    sync(str(source), str(dest), "")
    return TreeSync(tuple(written), tuple(removed))


def _same_bytes(a: os.DirEntry[str], b: os.DirEntry[str]) -> bool:
    if a.stat(follow_symlinks=False).st_size != b.stat(follow_symlinks=False).st_size:
        return False
    with open(a.path, "rb") as first, open(b.path, "rb") as second:
        while True:
            chunk = first.read(1 << 20)
            if chunk != second.read(1 << 20):
                return False
            if not chunk:
                return True


def stale_staging(parent: Path, name: str = "") -> Iterator[Path]:
    """Staging directories in ``parent`` (with ``name``: only those of ``parent / name``).

    A staging name is the prefix, the entry's name, a dot and mkdtemp's
    suffix (no dot in it): ``oslo`` must not match ``oslo.messaging``'s.
    """
    prefix = f"{STAGING_PREFIX}{name}." if name else STAGING_PREFIX
    if parent.is_dir():
        yield from (p for p in parent.iterdir() if p.name.startswith(prefix)
                    and (not name or "." not in p.name[len(prefix):]))


def clean_staging(parent: Path, name: str = "") -> None:
    """Remove staging directories a killed run left in ``parent`` (call while holding its lock).

    With ``name``, only those of ``replace_dir(parent / name)``: a directory
    whose entries have locks of their own (the git mirrors) is cleaned entry by
    entry, so one fetch never removes another's work in progress.
    """
    for leftover in stale_staging(parent, name):
        console.note(f"removing {leftover} left by an interrupted run")
        shutil.rmtree(leftover, ignore_errors=True)


def name_places(places: dict[Path, str]) -> None:
    """What the run's directories are (``{workdir: "the work directory", ...}``), for messages."""
    _PLACES.update(places)


def disk_full(path: Path | str) -> DiskFullError:
    """A write into ``path`` found its device full: named by the directory the user can free space in (the
    work directory, the cache), and where in it."""
    path = Path(path).absolute()
    place = str(path)
    for root, what in sorted(_PLACES.items(), key=lambda item: len(str(item[0])), reverse=True):
        if path == root or root in path.parents:
            place = f"{what} {root}" + ("" if path == root else f" ({path.relative_to(root)})")
            break
    return DiskFullError(f"no space left on the device of {place}",
                         hint="free space there (or point workdir / cache_dir at a larger file system), then rerun")


def nearly_full(path: Path | str) -> bool:
    """Less than a MiB left where ``path`` is (or would be): what makes a write fail with no clearer word."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free < 1 << 20


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def is_not_writable(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
