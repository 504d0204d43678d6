"""What is installed in an image, read by running it: its Python distributions, its Debian packages, and
the shared libraries its extensions need that it cannot load.

The inventory runs in a throw-away container of the image with the image's
own Python (no guessing from build inputs); the ELF dependencies of every
shared object under the venv are resolved as the loader does (RUNPATH with
``$ORIGIN``, the loader's cache, the system directories), in milliseconds
where ``ldd`` takes seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import ImageBuildError, ImageContentError, SbomError
from pipeline.image.engine import run_container
from pipeline.image.record import ImageRecord

if TYPE_CHECKING:
    from docker import APIClient

# Runs inside the image with its own Python: installed distributions and the
# marker environment needed to resolve their dependencies on the host.
INVENTORY_SCRIPT = r"""
import importlib.metadata as m, json, os, platform, sys
def ver(info):
    v = "{0.major}.{0.minor}.{0.micro}".format(info)
    return v + (info.releaselevel[0] + str(info.serial) if info.releaselevel != "final" else "")
env = {
    "implementation_name": sys.implementation.name,
    "implementation_version": ver(sys.implementation.version),
    "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}
def dist(d):  # each .metadata parses METADATA again: a fifth of the whole run when asked five times
    meta = d.metadata
    return {"name": meta["Name"], "version": meta["Version"], "requires": meta.get_all("Requires-Dist") or d.requires or [],
            "license": meta.get("License-Expression") or meta.get("License") or ""}
dists = [dist(d) for d in m.distributions()]
import subprocess
debs = subprocess.run(["dpkg-query", "-W", "-f=${Package}\\t${Version}\\t${Architecture}\\n"],
                      capture_output=True, text=True, check=True).stdout

# Every shared object under the venv and the libraries it needs that the image cannot load (ELF DT_NEEDED,
# resolved by its RPATH/RUNPATH with $ORIGIN, the loader's cache and the system directories): ldd would
# take seconds, this a few milliseconds.
import struct
def elf_needs(path):
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return [], []
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    dynamic, loads = None, []
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize)
        if kind == 2:
            dynamic = (offset, filesz)
        elif kind == 1:
            loads.append((vaddr, offset, filesz))
    if dynamic is None:
        return [], []
    entries = []
    for at in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, at)
        if tag == 0:
            break
        entries.append((tag, value))
    strtab = next((v for t, v in entries if t == 5), None)
    base = next((strtab - va + o for va, o, size in loads if strtab is not None and va <= strtab < va + size), None)
    if base is None:
        return [], []
    text = lambda v: data[base + v:data.index(b"\0", base + v)].decode("utf-8", "replace")
    return [text(v) for t, v in entries if t == 1], [text(v) for t, v in entries if t in (15, 29)]
system = set()
for line in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout.splitlines()[1:]:
    system.add(line.strip().split(" ", 1)[0])
arch = platform.machine()
for folder in ("/lib", "/usr/lib", "/lib64", "/usr/lib64", f"/lib/{arch}-linux-gnu", f"/usr/lib/{arch}-linux-gnu"):
    if os.path.isdir(folder):
        system.update(os.listdir(folder))
missing = {}
for top, _, files in os.walk("/var/lib/openstack"):
    for name in files:
        path = os.path.join(top, name)
        if ".so" not in name or os.path.islink(path):
            continue
        needs, search = elf_needs(path)
        folders = [f.replace("$ORIGIN", top).replace("${ORIGIN}", top) for entry in search for f in entry.split(":")]
        # A library auditwheel grafted into a wheel's <dist>.libs/ finds its siblings there: the extension that
        # needs it has that folder in its RUNPATH and loads them first (Pillow's libtiff needs its liblzma).
        if top.endswith(".libs"):
            folders.append(top)
        lost = [lib for lib in needs if lib not in system and not any(os.path.exists(os.path.join(f, lib)) for f in folders)]
        if lost:
            missing[path] = lost
print(json.dumps({"env": env, "dists": dists, "debs": debs, "missing_libraries": missing}))
"""


@dataclass(frozen=True)
class Inventory:
    env: dict[str, str]
    dists: list[dict[str, Any]]
    debs: list[tuple[str, str, str]]  # name, version, architecture
    missing_libraries: dict[str, list[str]]  # shared object under the venv -> libraries the image cannot load


def read_inventory(client: APIClient, image_id: str) -> Inventory:
    """What is installed in the image, read by running it (no guessing from build inputs)."""
    try:
        out = run_container(client, image_id, ["/var/lib/openstack/bin/python", "-c", INVENTORY_SCRIPT], "SBOM inventory")
    except ImageBuildError as error:  # the command failed (no hint), or the engine did (its hint)
        raise SbomError(f"cannot list the contents of image {image_id[:19]}: {error.message}",
                        hint=error.hint or "the image must have /var/lib/openstack/bin/python and dpkg-query") from None
    data = json.loads(out)
    rows = [tuple(line.split("\t")) for line in data["debs"].splitlines() if line.count("\t") == 2]
    return Inventory(data["env"], data["dists"], sorted(rows), data.get("missing_libraries", {}))


def check_libraries(record: ImageRecord, inventory: Inventory) -> None:
    """An image whose Python extensions need a library no installed Debian package provides cannot run them:
    say which, and where to declare the package (the SBOM reads the image, so it is where this shows)."""
    if not inventory.missing_libraries:
        return
    shown = [f"{path.removeprefix('/var/lib/openstack/lib/python' + record.target['python'] + '/site-packages/')}: "
             f"{', '.join(libs)}" for path, libs in sorted(inventory.missing_libraries.items())]
    more = f"\n    (and {len(shown) - 8} more)" if len(shown) > 8 else ""
    raise ImageContentError(
        f"image {record.service} ({record.release}) {record.image_id[7:19]}: shared libraries that no "
        f"installed package provides:\n    " + "\n    ".join(shown[:8]) + more,
        hint=f"add the Debian packages that ship them (apt-file search <library>) to services.{record.service}."
             f"packages in releases/{record.release}/runtime.yaml, then rebuild",
    )
