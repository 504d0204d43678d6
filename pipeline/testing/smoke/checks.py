"""What a smoke asks the running services, through python-openstackclient in the client container.

Owns the checks of each service (a real client doing what an operator's
first day does: a token and the catalog; a real disk image uploaded and
downloaded byte for byte; a server booted to ACTIVE on nova's fake driver
and deleted; the compute node as a placement resource provider; a network
that becomes a logical switch in OVN's northbound database; a volume that
becomes available), and the check that the code running in each service's
container is the patched code: each file the series changes, read in the
running container, is the prepared tree's file and differs from upstream's.
A failed check raises ``CheckFailed`` with the command and its output.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.image.record import ImageRecord
from pipeline.testing.smoke.plane import Plane

CLIENT = "client"
WAIT = 120.0  # seconds a state change may take (a server to ACTIVE, a service to report up)


class CheckFailed(Exception):
    """A check's expectation did not hold (the message says what was asked and what came back)."""


@dataclass(frozen=True)
class Check:
    service: str
    name: str
    run: Callable[[Context], str]  # returns a short detail for the report


@dataclass
class Context:
    plane: Plane
    services: list[str]  # the services this smoke runs
    facts: dict[str, Any]  # what checks pass on (ids, checksums)

    def openstack(self, *args: str, parse: bool = True) -> Any:
        """``openstack <args>`` in the client container (JSON output parsed)."""
        command = ["openstack", *args, *(["-f", "json"] if parse else [])]
        code, out, err = self.plane.exec(CLIENT, command)
        if code != 0:
            raise CheckFailed(f"`{shlex.join(command)}` exited {code}:\n{indent(err or out)}")
        if not parse:
            return out
        try:
            return json.loads(out) if out.strip() else None
        except json.JSONDecodeError:
            raise CheckFailed(f"`{shlex.join(command)}` printed no JSON:\n{indent(out)}") from None

    def shell(self, container: str, script: str, user: str | None = None) -> str:
        code, out, err = self.plane.exec(container, ["sh", "-ec", script], user=user)
        if code != 0:
            raise CheckFailed(f"`{script}` in {container} exited {code}:\n{indent(err or out)}")
        return out

    def until(self, what: str, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Ask ``probe`` again until it returns something true; the last answer is in the failure."""
        started = time.monotonic()
        last: Any = None
        while time.monotonic() - started < timeout:
            last = probe()
            if last:
                return last
            time.sleep(1)
        raise CheckFailed(f"{what}: not so after {timeout:.0f} s (last answer: {json.dumps(last)[:600]})")


def indent(text: str) -> str:
    lines = text.strip().splitlines()[-15:] or ["(no output)"]
    return "\n".join(f"    | {line}" for line in lines)


def _field(rows: list[dict[str, Any]], key: str) -> list[Any]:
    return [row.get(key) for row in rows or []]


# --- keystone --------------------------------------------------------------------------


def token_issue(ctx: Context) -> str:
    token = ctx.openstack("token", "issue")
    if not token or not token.get("id"):
        raise CheckFailed(f"token issue gave no token: {token}")
    return f"expires {token.get('expires')}"


def catalog_list(ctx: Context) -> str:
    types = set(_field(ctx.openstack("catalog", "list"), "Type"))
    wanted = set(ctx.facts["catalog_types"])
    if not wanted <= types:
        raise CheckFailed(f"the catalog lacks {', '.join(sorted(wanted - types))} (it has {', '.join(sorted(types))})")
    return f"{len(types)} services"


# --- placement ---------------------------------------------------------------------------


def resource_classes(ctx: Context) -> str:
    names = set(_field(ctx.openstack("resource", "class", "list"), "name"))
    if not {"VCPU", "MEMORY_MB", "DISK_GB"} <= names:
        raise CheckFailed(f"placement's standard resource classes are missing: {sorted(names)[:10]}")
    return f"{len(names)} resource classes"


# --- glance ----------------------------------------------------------------------------------


def image_create(ctx: Context) -> str:
    # A real qcow2 disk: 64 MiB virtual, 4 MiB of data written through qemu-io.
    digest = ctx.shell(CLIENT, "qemu-img create -q -f qcow2 /tmp/smoke.qcow2 64M; "
                               "qemu-io -c 'write -q -P 0x5a 0 4M' /tmp/smoke.qcow2 >/dev/null; "
                               "sha256sum /tmp/smoke.qcow2").split()[0]
    image = ctx.openstack("image", "create", "--disk-format", "qcow2", "--container-format", "bare",
                          "--file", "/tmp/smoke.qcow2", "smoke-image")
    image = ctx.until("the image to be active", lambda: (i := ctx.openstack("image", "show", image["id"]))
                      and i.get("status") == "active" and i)
    ctx.facts.update(image_id=image["id"], image_sha256=digest)
    return f"{image['id'][:8]} active, {image.get('size')} bytes"


def image_download(ctx: Context) -> str:
    ctx.openstack("image", "save", "--file", "/tmp/smoke-back.qcow2", ctx.facts["image_id"], parse=False)
    back = ctx.shell(CLIENT, "sha256sum /tmp/smoke-back.qcow2").split()[0]
    if back != ctx.facts["image_sha256"]:
        raise CheckFailed(f"the downloaded image differs from the uploaded one (sha256 {back} != {ctx.facts['image_sha256']})")
    return f"sha256 {back[:12]} as uploaded"


# --- nova ------------------------------------------------------------------------------------


def compute_services(ctx: Context) -> str:
    wanted = {"nova-conductor", "nova-scheduler", "nova-compute"}

    def up() -> list[dict[str, Any]] | None:
        rows = ctx.openstack("compute", "service", "list")
        states = {row["Binary"]: row["State"] for row in rows or []}
        return rows if all(states.get(b) == "up" for b in wanted) else None

    ctx.until("nova-conductor, nova-scheduler and nova-compute to be up", up)
    return "conductor, scheduler, compute up"


def compute_node_provider(ctx: Context) -> str:
    providers = ctx.until("the compute node to be a placement resource provider",
                          lambda: [p for p in ctx.openstack("resource", "provider", "list") or []
                                   if p.get("name") == "nova-compute"])
    inventory = ctx.openstack("resource", "provider", "inventory", "list", providers[0]["uuid"])
    classes = sorted(_field(inventory, "resource_class"))
    return f"provider {providers[0]['uuid'][:8]} with {', '.join(classes)}"


def flavor_create(ctx: Context) -> str:
    flavor = ctx.openstack("flavor", "create", "--ram", "256", "--disk", "1", "--vcpus", "1", "smoke-flavor")
    return f"{flavor['name']} ({flavor['id'][:8]})"


def server_create(ctx: Context) -> str:
    # The scheduler maps the new compute node to its cell every 2 s (nova.conf): wait until a server can land.
    ctx.until("the compute node to be mapped to a cell",
              lambda: ctx.openstack("hypervisor", "list"))
    server = ctx.openstack("server", "create", "--flavor", "smoke-flavor", "--image", ctx.facts["image_id"],
                           "--nic", "none", "--wait", "smoke-server")
    if server.get("status") != "ACTIVE":
        raise CheckFailed(f"the server is {server.get('status')}, not ACTIVE: {server.get('fault')}")
    ctx.facts["server_id"] = server["id"]
    return f"{server['id'][:8]} ACTIVE on {server.get('OS-EXT-SRV-ATTR:host') or 'nova-compute'}"


def server_delete(ctx: Context) -> str:
    ctx.openstack("server", "delete", "--wait", ctx.facts["server_id"], parse=False)
    return "deleted"


# --- neutron ---------------------------------------------------------------------------------


def _logical_switches(ctx: Context) -> list[str]:
    return ctx.shell("ovn", "ovn-nbctl --db=unix:/var/run/ovn/ovnnb_db.sock ls-list").splitlines()


def network_create(ctx: Context) -> str:
    network = ctx.openstack("network", "create", "smoke-net")
    ctx.facts["network_id"] = network["id"]
    switch = ctx.until("the network to be a logical switch in OVN's northbound database",
                       lambda: [line for line in _logical_switches(ctx) if f"neutron-{network['id']}" in line])
    return f"{network['id'][:8]} = {switch[0].split()[0][:8]} (neutron-{network['id'][:8]}...) in OVN"


def subnet_create(ctx: Context) -> str:
    subnet = ctx.openstack("subnet", "create", "--network", ctx.facts["network_id"], "--subnet-range", "192.0.2.0/24",
                           "smoke-subnet")
    return f"{subnet['cidr']} ({subnet['id'][:8]})"


def network_delete(ctx: Context) -> str:
    ctx.openstack("subnet", "delete", "smoke-subnet", parse=False)
    ctx.openstack("network", "delete", ctx.facts["network_id"], parse=False)
    ctx.until("the logical switch to leave OVN's northbound database",
              lambda: not [line for line in _logical_switches(ctx) if ctx.facts["network_id"] in line] or None)
    return "deleted, and gone from OVN"


# --- cinder ----------------------------------------------------------------------------------


def volume_services(ctx: Context) -> str:
    def up() -> list[dict[str, Any]] | None:
        rows = ctx.openstack("volume", "service", "list")
        states = {row["Binary"]: row["State"] for row in rows or []}
        return rows if states.get("cinder-scheduler") == "up" and states.get("cinder-volume") == "up" else None

    ctx.until("cinder-scheduler and cinder-volume to be up", up)
    return "scheduler, volume up"


def volume_create(ctx: Context) -> str:
    volume = ctx.openstack("volume", "create", "--size", "1", "smoke-volume")

    def available() -> Any:
        shown = ctx.openstack("volume", "show", volume["id"])
        if shown and shown.get("status") != "available":
            _failed_volume(shown)
            return None
        return shown

    volume = ctx.until("the volume to be available", available)
    ctx.facts["volume_id"] = volume["id"]
    return f"{volume['id'][:8]} available, {volume['size']} GiB"


def _failed_volume(volume: dict[str, Any]) -> None:
    if volume.get("status") == "error":
        raise CheckFailed(f"the volume went to error: {json.dumps(volume)[:400]}")


def volume_delete(ctx: Context) -> str:
    ctx.openstack("volume", "delete", ctx.facts["volume_id"], parse=False)
    ctx.until("the volume to be gone",
              lambda: ctx.facts["volume_id"] not in _field(ctx.openstack("volume", "list"), "ID") or None)
    return "deleted"


CHECKS: dict[str, list[tuple[str, Callable[[Context], str]]]] = {
    "keystone": [("token issue", token_issue), ("catalog list", catalog_list)],
    "placement": [("resource class list", resource_classes)],
    "glance": [("image create (qcow2)", image_create), ("image save, same bytes", image_download)],
    "neutron": [("network create: an OVN logical switch", network_create), ("subnet create", subnet_create),
                ("network delete: gone from OVN", network_delete)],
    "cinder": [("volume service list", volume_services), ("volume create: available", volume_create),
               ("volume delete", volume_delete)],
    "nova": [("compute service list", compute_services), ("compute node is a resource provider", compute_node_provider),
             ("flavor create", flavor_create), ("server create --nic none --wait: ACTIVE", server_create),
             ("server delete --wait", server_delete)],
}


def checks_of(service: str) -> list[Check]:
    return [Check(service, name, run) for name, run in CHECKS.get(service, [])]


# --- the running code is the patched code ------------------------------------------------------

FILES_SCRIPT = r"""
import hashlib, json, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
out = {}
for path in sys.argv[1:]:
    try:
        with open(f"{site}/{path}", "rb") as handle:
            out[path] = hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        pass
print(json.dumps({"site": site, "files": out}))
"""


def patched_code(ctx: Context, container: str, record: ImageRecord, workdir: Path) -> str:
    """Each Python module a patch of the image changes, as the running container has it, is the prepared
    tree's and not upstream's."""
    verified, missing = [], []
    for component in dict.fromkeys(p["component"] for p in record.patches):
        files = sorted({f for p in record.patches if p["component"] == component for f in p["files"]
                        if f.endswith(".py")})
        prepared = workdir / "patched" / record.release / component
        pristine = workdir / "src" / record.release / component
        wanted = {f: _sha256(prepared / f) for f in files}
        code, out, err = ctx.plane.exec(container, ["/var/lib/openstack/bin/python", "-c", FILES_SCRIPT, *wanted])
        if code != 0:
            raise CheckFailed(f"cannot read the installed files in {container}: {err.strip()[-400:]}")
        installed = json.loads(out)["files"]
        changed = [f for f in installed if wanted[f] is not None and wanted[f] != _sha256(pristine / f)]
        stale = [f for f in changed if installed[f] != wanted[f]]
        if stale:
            raise CheckFailed(f"{container} runs {component} without its patches: {', '.join(stale)} "
                              f"differ from build/patched/{record.release}/{component}")
        if changed:
            verified.append(f"{component}: {len(changed)} file(s)")
        else:
            missing.append(component)
    if not verified:
        raise CheckFailed(f"no patched module of {', '.join(missing)} is installed in {container}: nothing shows the "
                          "patches are there")
    return "; ".join(verified)


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
