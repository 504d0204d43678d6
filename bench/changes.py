"""The real code changes the benches make to a shipped patch: different bytecode, same behaviour.

Each replaces text inside an added line of the first patch of a series, so the
patch still applies and the change lands in the built package; MARK finds it there.
"""

from __future__ import annotations

from pathlib import Path

MARK = "bench-change"
CODE_CHANGES = {
    "keystone": ("+system_random = secrets.SystemRandom()", f'+system_random = secrets.SystemRandom("{MARK}")'),
    "oslo.messaging": ("+            durable=False,\n", f'+            durable=(False and "{MARK}"),\n'),
}


def change_code(patches: Path, component: str, release: str) -> Path:
    """Make the code change in ``patches/<component>/<release>``'s first patch; return that patch."""
    patch = sorted((patches / component / release).glob("*.patch"))[0]
    old, new = CODE_CHANGES[component]
    text = patch.read_text()
    if old not in text:
        raise SystemExit(f"{patch}: the bench's code change no longer applies (no line {old.strip()!r})")
    patch.write_text(text.replace(old, new, 1))
    return patch
