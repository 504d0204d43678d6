"""Inter-process locks: one per cached mirror, per work-directory release and per engine-side image set.

Locks are ``flock`` locks (through filelock): the kernel releases them when
their process dies, so a killed run never blocks the next one.  Inside one
process a thread lock per path comes first (threads of one build share the
process's file locks).  A run that has to wait says, after a second, what it
waits for and who holds it (pid and command, from a ``.owner`` file next to
the lock), and keeps a progress line while it waits.

What a killed process leaves behind besides the lock, git's own ``*.lock``
files and staging directories, is removed by ``clean_git_locks`` and
``files.clean_staging`` by whoever holds the lock next, with a message.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import filelock

from pipeline.core import console
from pipeline.core.files import is_not_writable

_thread_locks: dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()
_held = threading.local()
FIRST_WAIT = 1.0


def _thread_lock(path: Path) -> threading.RLock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(str(path), threading.RLock())


def _owner_text() -> str:
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
    return f"pid {os.getpid()} on {socket.gethostname()}: {command}"


@contextmanager
def hold(path: Path, what: str) -> Iterator[None]:
    """Hold the lock at ``path`` (``what`` names the protected thing in messages)."""
    held: set[str] = getattr(_held, "paths", set())
    _held.paths = held
    if str(path) in held:  # re-entrant within one thread
        yield
        return
    owner = path.with_name(path.name + ".owner")
    with _thread_lock(path):
        lock = filelock.FileLock(str(path))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=FIRST_WAIT)
        except filelock.Timeout:  # (an OSError too, in filelock 4: caught first)
            holder = owner.read_text(errors="replace").strip() if owner.exists() else "another run"
            console.note(f"waiting for {what}: held by {holder}")
            progress = console.Progress(f"lock {what}")
            while True:
                try:
                    lock.acquire(timeout=5)
                    break
                except filelock.Timeout:
                    progress.update("still waiting")
            progress.done()
        except OSError as exc:
            if not is_not_writable(exc):
                raise
            # What this process cannot write, it cannot change either: a read-only
            # run (nothing to do) goes on; the first write names the real problem.
            yield
            return
        with contextlib.suppress(OSError):
            owner.write_text(_owner_text() + "\n")
        held.add(str(path))
        try:
            yield
        finally:
            held.discard(str(path))
            with contextlib.suppress(OSError):
                owner.unlink(missing_ok=True)
            lock.release()


# Git's own lock files: a git process killed half-way leaves them and every
# later git command in that repository fails ("Unable to create ...lock").
_GIT_LOCK_NAMES = ("shallow.lock", "HEAD.lock", "config.lock", "packed-refs.lock", "index.lock", "FETCH_HEAD.lock",
                   "ORIG_HEAD.lock")


def clean_git_locks(git_dir: Path) -> None:
    """Remove ``*.lock`` files a killed git left in ``git_dir`` (call while holding our lock of it)."""
    if not git_dir.is_dir():
        return
    candidates = [git_dir / name for name in _GIT_LOCK_NAMES]
    refs = git_dir / "refs"
    if refs.is_dir():
        candidates += list(refs.rglob("*.lock"))
    for path in candidates:
        if path.exists():
            age = time.time() - path.stat().st_mtime
            console.note(f"removing {path} left by an interrupted git process ({age:.0f}s old)")
            path.unlink(missing_ok=True)
