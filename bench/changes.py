"""The real code changes the benches make to a shipped patch: different bytecode, same behaviour.

Each replaces text inside an added line of the first patch of a series, so the
patch still applies and the change lands in the built package, where its
mark (a string literal in the new code) finds it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

CODE_CHANGES = {  # component: (old text, new text, mark)
    "keystone": ("+system_random = secrets.SystemRandom()", '+system_random = secrets.SystemRandom("bench-change-1")',
                 "bench-change-1"),
    "oslo.messaging": ("+            durable=False,\n", '+            durable=(False and "bench-change-2"),\n',
                       "bench-change-2"),
}


_ORIGINAL: dict[Path, str] = {}
# Every change of a bench run is new to the engine and the wheel cache: a change an earlier run made would find
# its layers cached there and be timed as a cache hit.
RUN_TOKEN = secrets.token_hex(4)


def change_code(patches: Path, component: str, release: str, variant: int = 0) -> tuple[Path, str]:
    """Make the code change in ``patches/<component>/<release>``'s first patch; return that patch and the mark.

    Each ``variant`` is another change of the same line (its mark gets the
    number), made on the patch as it was before the first change: a bench
    can take several samples of one kind of change.  The mark also holds
    this run's token, so no change repeats one of an earlier run.
    """
    patch = sorted((patches / component / release).glob("*.patch"))[0]
    old, new, mark = CODE_CHANGES[component]
    unique = f"{mark}-{RUN_TOKEN}-{variant}" if variant else f"{mark}-{RUN_TOKEN}"
    new, mark = new.replace(mark, unique), unique
    text = _ORIGINAL.setdefault(patch, patch.read_text())
    if old not in text:
        raise SystemExit(f"{patch}: the bench's code change no longer applies (no line {old.strip()!r})")
    patch.write_text(text.replace(old, new, 1))
    return patch, mark
