"""One smoke run's things on the engine: its network, volumes and containers, from creation to teardown.

Owns their names (``<prefix>-smoke-<run>-<name>``: two runs on one engine
never meet; no host port is published, so nothing on the host can be in
the way), their labels (the run, and ``io.openstack-patches.temporary`` with
this host and process, so that the next run removes what a killed one left),
containers made with their configuration files put in before the start (an
archive through the API: a remote engine works, nothing is bind-mounted),
readiness (a probe run in the container every second while the run waits, the
image's HEALTHCHECK or the run's own, never the engine's periodic checks; a
container that stops is reported with the end of its log), one-shot commands, ``exec`` and logs, and the teardown of
everything the run made, on success, failure or interrupt.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import socket
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.core.errors import DockerUnavailableError, SmokeStartError
from pipeline.core.files import signals_held
from pipeline.core.redact import redact
from pipeline.image.engine import TEMPORARY, _alive, inspect_present

if TYPE_CHECKING:
    from docker import APIClient  # imported when a task needs the engine (pipeline.image.engine.connect)

SMOKE = "io.openstack-patches.smoke"  # label: the run a thing belongs to
LOG_TAIL = 25
# A WSGI server keeps its master running while the application fails to load in worker after worker
# (uWSGI with lazy-apps respawns it, mod_wsgi restarts its daemon): three times is a crash, not a slow start.
CRASH_LOOP = re.compile(r"DAMN ! worker \d+ \(pid: \d+\) died|mod_wsgi \(pid=\d+\): Failed to exec Python script file"
                        r"|mod_wsgi \(pid=\d+\): Exception occurred processing WSGI script")
CRASHES = 3


@dataclass(frozen=True)
class ConfigFile:
    """A file put into a container before it starts (root's, readable by its group)."""

    path: str  # absolute, in the container
    data: bytes
    mode: int = 0o640
    gid: int = 42424  # the images' openstack group: the service reads it, others cannot


def files_archive(files: Sequence[ConfigFile]) -> bytes:
    """A tar archive of ``files`` with their directories, to unpack at ``/``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        made: set[str] = set()
        for item in files:
            parts = item.path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.gid = len(item.data), item.mode, item.gid
            tar.addfile(info, io.BytesIO(item.data))
    return buffer.getvalue()


@dataclass
class Container:
    name: str  # the run's own name for it (mariadb, keystone-api, ...)
    id: str
    what: str  # for messages: "MariaDB", "keystone-api (keystone)"
    probe: tuple[str, ...] = ()  # the command that says it is ready (its image's HEALTHCHECK, or the run's)


HTTP_PROBE = ("import sys, urllib.request, urllib.error\n"
              "try:\n    urllib.request.urlopen(sys.argv[1], timeout=5)\n"
              "except urllib.error.HTTPError as e:\n    sys.exit(e.code >= 500)\n")


def http_probe(port: int) -> list[str]:
    """An API process is ready when it answers HTTP on its port (any status below 500)."""
    # -I -S: the venv's site-packages are not scanned for a probe that needs only urllib
    return ["/var/lib/openstack/bin/python", "-I", "-S", "-c", HTTP_PROBE, f"http://127.0.0.1:{port}/"]


def _image_probe(client: APIClient, image: str) -> list[str]:
    """The image's HEALTHCHECK as a command to run in its container (none: ready once it runs)."""
    with _engine(f"inspecting {image}"):
        test = (inspect_present(client, image)["Config"].get("Healthcheck") or {}).get("Test") or []
    if test[:1] == ["CMD"]:
        return test[1:]
    if test[:1] == ["CMD-SHELL"]:
        return ["/bin/sh", "-c", test[1]]
    return ["true"]


@dataclass
class Plane:
    """The engine-side things of one smoke run."""

    client: APIClient
    prefix: str
    run: str = field(default_factory=lambda: secrets.token_hex(4))
    containers: dict[str, Container] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)
    network: str = ""
    closed: bool = False  # torn down: a step still running makes nothing more
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def labels(self) -> dict[str, str]:
        return {SMOKE: self.run, TEMPORARY: f"{socket.gethostname()}:{os.getpid()}"}

    def full_name(self, name: str) -> str:
        return f"{self.prefix.replace('/', '-')}-smoke-{self.run}-{name}"

    # --- making things ------------------------------------------------------------------

    def create_network(self) -> None:
        with _engine("creating the smoke's network"):
            remove_leftovers(self.client)
            self.network = self.full_name("net")
            self.client.create_network(self.network, driver="bridge", labels=self.labels)

    def volume(self, name: str) -> str:
        full = self.full_name(name)
        with _engine(f"creating volume {name}"):
            self.client.create_volume(full, labels=self.labels)
        with self._lock:
            self.volumes.append(full)
        return full

    def start(self, name: str, image: str, command: list[str] | None, what: str, *, files: Sequence[ConfigFile] = (),
              user: str | None = None, environment: Mapping[str, str] | None = None,
              probe: list[str] | None = None, volumes: Mapping[str, str] | None = None,
              tmpfs: Mapping[str, str] | None = None, privileged: bool = False, aliases: tuple[str, ...] = (),
              entrypoint: list[str] | None = None) -> Container:
        """Create ``name`` from ``image`` on the run's network (reachable as ``name`` and ``aliases``), put
        ``files`` in, and start it.  ``probe`` (default: the image's HEALTHCHECK) says when it is ready."""
        full = self.full_name(name)
        binds: dict[str, Mapping[str, str]] = {volume: {"bind": path, "mode": "rw"}
                                               for volume, path in (volumes or {}).items()}
        host_config = self.client.create_host_config(binds=binds or None, tmpfs=dict(tmpfs or {}) or None,
                                                     privileged=privileged, network_mode=self.network, init=True)
        networking = self.client.create_networking_config(  # network -> endpoint, as docker-py takes it
            {self.network: self.client.create_endpoint_config(aliases=[name, *aliases])})  # type: ignore[arg-type]
        if probe is None:
            probe = _image_probe(self.client, image)
        if self.closed:
            raise SmokeStartError(f"{what}: the smoke is being torn down")
        with _engine(f"creating the container of {what}"):
            made = self.client.create_container(
                image, command=command, name=full, hostname=name, user=user, environment=dict(environment or {}),
                labels=self.labels, host_config=host_config, networking_config=networking,
                # The smoke probes while it waits, never after: the engine's own checks every second in forty
                # containers were a whole core of this machine (and Docker 20.10 has no start interval).
                healthcheck={"test": ["NONE"]}, entrypoint=entrypoint)
            container = Container(name, made["Id"], what, tuple(probe or ()))
            with self._lock:
                self.containers[name] = container
            if files:
                self.client.put_archive(container.id, "/", files_archive(list(files)))
            self.client.start(container.id)
        return container

    # --- watching them ------------------------------------------------------------------

    def state(self, name: str) -> dict[str, Any]:
        with _engine(f"asking for the state of {name}"):
            state: dict[str, Any] = self.client.inspect_container(self.containers[name].id)["State"]  # the engine's JSON
        return state

    def address(self, name: str) -> str:
        """The container's address on the run's network."""
        with _engine(f"asking for the address of {name}"):
            networks = self.client.inspect_container(self.containers[name].id)["NetworkSettings"]["Networks"]
        address: str = networks[self.network]["IPAddress"]
        return address

    def wait_ready(self, name: str, timeout: float, started: float | None = None) -> float:
        """Probe the container every second until it is ready; a container that stops or never gets ready is a
        SmokeStartError naming it with the end of its log.  Returns the seconds waited."""
        started = started or time.monotonic()
        container = self.containers[name]
        said = ""  # the probe's last line, for the message
        while True:
            if not self.state(name).get("Running"):
                raise SmokeStartError(f"{container.what} stopped (exit {self.state(name).get('ExitCode')}) before it was "
                                      f"ready:\n{self.tail(name)}", hint=self.hint(name))
            code, out, err = self.exec(name, list(container.probe))
            if code == 0:
                return time.monotonic() - started
            said = ((err or out).strip().splitlines() or [f"exit {code}"])[-1]
            if len(CRASH_LOOP.findall(self.logs(name))) >= CRASHES:
                raise SmokeStartError(f"{container.what} cannot load its application (its workers die as they "
                                      f"start):\n{self.tail(name)}", hint=self.hint(name))
            if time.monotonic() - started > timeout:
                raise SmokeStartError(f"{container.what} did not get ready within {timeout:.0f} s (its probe last said: "
                                      f"{said[:200]}):\n{self.tail(name)}", hint=self.hint(name))
            time.sleep(1)

    def running(self, name: str) -> None:
        """A container that should still run; one that stopped is a SmokeStartError with the end of its log."""
        state = self.state(name)
        if not state.get("Running"):
            raise SmokeStartError(f"{self.containers[name].what} stopped (exit {state.get('ExitCode')}):\n{self.tail(name)}",
                                  hint=self.hint(name))

    def answers(self, name: str, timeout: float) -> str:
        """A process with an API: how long until its probe passed (see ``wait_ready``)."""
        return f"{self.wait_ready(name, timeout):.1f}s to answer"

    def settled(self, name: str, seconds: float = 3.0) -> str:
        """A process without an API: still running a few seconds after its start (it has read its configuration and
        connected to the database and the message queue, or it has stopped)."""
        begun = self.state(name).get("StartedAt", "")
        time.sleep(seconds)
        self.running(name)
        return f"running since {begun[11:19]}"

    def hint(self, name: str) -> str:
        return f"its whole log is kept in the smoke's log folder (container {self.full_name(name)})"

    def logs(self, name: str) -> str:
        with _engine(f"reading the log of {name}"):
            data = self.client.logs(self.containers[name].id, stdout=True, stderr=True)
        return redact(data.decode("utf-8", "replace"))

    def tail(self, name: str, lines: int = LOG_TAIL) -> str:
        text = self.logs(name).rstrip().splitlines()[-lines:]
        return "\n".join(f"    | {line}" for line in text) or "    | (no output)"

    # --- commands -------------------------------------------------------------------------

    def exec(self, name: str, command: list[str], user: str | None = None,
             environment: Mapping[str, str] | None = None) -> tuple[int, str, str]:
        """Run ``command`` in the running container ``name``: (exit code, stdout, stderr)."""
        container = self.containers[name]
        with _engine(f"running {command[0]} in {container.what}"):
            made = self.client.exec_create(container.id, command, user=user or "", environment=dict(environment or {}),
                                           stdout=True, stderr=True)
            out, err = self.client.exec_start(made["Id"], demux=True)
            code = self.client.exec_inspect(made["Id"]).get("ExitCode")
        return code if code is not None else -1, (out or b"").decode("utf-8", "replace"), \
            (err or b"").decode("utf-8", "replace")

    def oneshot(self, name: str, image: str, command: list[str], what: str, timeout: float, **options: Any) -> str:
        """Run ``command`` to its end in a new container; its output, or a SmokeStartError with its end."""
        self.start(name, image, command, what, **options)
        container = self.containers[name]
        with _engine(f"waiting for {what}"):
            try:
                status = self.client.wait(container.id, timeout=timeout)  # type: ignore[arg-type]  # requests' float
            except Exception as exc:  # requests' read timeout: the command hangs
                if "timed out" not in str(exc).lower() and "timeout" not in type(exc).__name__.lower():
                    raise
                raise SmokeStartError(f"{what} did not finish within {timeout:.0f} s:\n{self.tail(name)}",
                                      hint=self.hint(name)) from None
        if status.get("StatusCode") != 0:
            raise SmokeStartError(f"{what} failed (exit {status.get('StatusCode')}):\n{self.tail(name)}",
                                  hint=self.hint(name))
        return self.logs(name)

    # --- the end ----------------------------------------------------------------------------

    def save_logs(self, directory: Path) -> None:
        """Every container's log (and its state) into ``directory``, one file each."""
        directory.mkdir(parents=True, exist_ok=True)
        for name in list(self.containers):
            with contextlib.suppress(Exception):
                state = self.state(name)
                head = f"# {self.containers[name].what}: container {self.full_name(name)}, " \
                       f"status {state.get('Status')}, exit {state.get('ExitCode')}\n"
                (directory / f"{name}.log").write_text(head + self.logs(name))

    def teardown(self) -> None:
        """Remove every container, volume and the network of the run (signals wait: nothing is left half)."""
        with signals_held():
            self.closed = True
            remove_run(self.client, self.run)


def remove_run(client: APIClient, run: str) -> None:
    """Everything labelled with the smoke run ``run``: containers first, then volumes and networks."""
    import docker.errors

    gone = (docker.errors.NotFound, docker.errors.APIError)
    for found in client.containers(all=True, filters={"label": f"{SMOKE}={run}"}):
        with contextlib.suppress(*gone):
            client.remove_container(found["Id"], force=True, v=True)
    for volume in (client.volumes(filters={"label": f"{SMOKE}={run}"}) or {}).get("Volumes") or []:
        with contextlib.suppress(*gone):
            client.remove_volume(volume["Name"], force=True)
    for network in client.networks(filters={"label": f"{SMOKE}={run}"}):
        with contextlib.suppress(*gone):
            client.remove_network(network["Id"])


def remove_leftovers(client: APIClient) -> list[str]:
    """Remove the runs that smokes on this host left when they were killed (their process is gone); a live
    run's things, and other hosts', stay.  Returns the runs removed."""
    host = socket.gethostname()
    dead: set[str] = set()
    for kind in (client.containers(all=True, filters={"label": SMOKE}),
                 (client.volumes(filters={"label": SMOKE}) or {}).get("Volumes") or [],
                 client.networks(filters={"label": SMOKE})):
        for found in kind:
            labels = found.get("Labels") or {}
            owner, _, pid = labels.get(TEMPORARY, "").rpartition(":")
            if owner == host and pid.isdigit() and not _alive(int(pid)) and labels.get(SMOKE):
                dead.add(labels[SMOKE])
    for run in sorted(dead):
        remove_run(client, run)
    return sorted(dead)


@contextlib.contextmanager
def _engine(what: str) -> Iterator[None]:
    """An engine that fails or goes away mid-run is exit 40, naming what was being done."""
    import docker.errors
    import requests

    try:
        yield
    except docker.errors.NotFound as exc:
        raise SmokeStartError(f"{what}: the engine no longer has it: {redact(str(exc.explanation or exc))}") from None
    except docker.errors.APIError as exc:
        raise SmokeStartError(f"{what}: the engine refused: {redact(str(exc.explanation or exc))}") from None
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise DockerUnavailableError(f"{what}: the Docker engine went away: {redact(str(exc))[:200]}",
                                     hint="start it again, then rerun; the next smoke removes what this one left") from None
