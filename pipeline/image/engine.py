"""The Docker engine: connection, streaming builds, content-addressed images, engine-side locks.

Owns how docker-py is used: one client per process for the engine named by
``DOCKER_HOST`` (unix socket, ``tcp://`` with the TLS variables, or
``ssh://``), build contexts as tar streams with normalised metadata, builds
whose every streamed item is checked (docker-py reports a failed step as an
item, not an exception) with a live progress line and a plain-text log, and
``ensure_image``: an image tag is made once and never re-tagged to another
image, with a lock per tag so concurrent runs on one engine reuse the first
one's result.  docker-py is imported here only, when a task needs the engine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import socket
import sys
import tarfile
import threading
import time
import types
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.core import console, locks
from pipeline.core.errors import DiskFullError, DockerUnavailableError, ImageBuildError
from pipeline.core.files import sha256_bytes
from pipeline.core.redact import redact
from pipeline.core.settings import Engine, Settings
from pipeline.image import layer_cache

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()
_infos: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # client -> engine_info
PING_TIMEOUT = 20  # seconds: an unreachable host is an error now, not after the build timeout
BUILD_TIMEOUT = 3600


def connect(settings: Settings):
    """The docker-py APIClient for the configured engine (one per process), or a clear error.

    The first connection says on stderr which engine answered (address, how
    it is reached, its name, version and architecture): with ``DOCKER_HOST``
    naming a remote engine, every image, build and container of the run is
    there, not on this host.
    """
    _defer_paramiko()
    import docker
    import docker.constants
    import docker.utils

    engine = settings.engine
    with _clients_lock:
        if engine.host in _clients:
            return _clients[engine.host]
        try:
            kwargs = docker.utils.kwargs_from_env(environment=_engine_environ(engine))
            # ssh:// goes through the ssh binary (the user's ~/.ssh/config, agent and known hosts apply),
            # which runs `docker system dial-stdio` on the remote host, as the docker CLI does.
            client = docker.APIClient(version=docker.constants.MINIMUM_DOCKER_API_VERSION, timeout=PING_TIMEOUT,
                                      use_ssh_client=engine.host.startswith("ssh://"), **kwargs)
            # requests would let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on hosts behind an intercepting
            # proxy) replace DOCKER_CERT_PATH/ca.pem, and route a tcp:// engine through HTTPS_PROXY:
            # the engine is verified with its own CA and reached directly.  Then the API version is
            # negotiated as version="auto" would, which asks before this could be set.
            client.trust_env = False
            client._version = client.version(api_version=False)["ApiVersion"]  # type: ignore[attr-defined]  # no setter
            client.ping()
            info = engine_info(client)
        except Exception as exc:  # noqa: BLE001 - docker-py raises several unrelated types here
            reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise DockerUnavailableError(
                f"no Docker engine answers at {engine.description}: {redact(reason)}",
                hint="start the Docker engine (scripts/setup starts one; or `systemctl start docker`), "
                     "or set DOCKER_HOST (tcp://host:2376 with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or ssh://user@host)",
            ) from None
        client.timeout = BUILD_TIMEOUT
        console.note(f"engine: {engine.description} ({info['name']}, Docker {info['version']}, {info['arch']}, "
                     f"data root {info['root']})")
        _clients[engine.host] = client
        return client


class _DeferredModule(types.ModuleType):
    """A module imported on its first use (an attribute asked of it), then used through this stand-in."""

    def __getattr__(self, name: str):
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def _defer_paramiko() -> None:
    """docker-py imports paramiko whenever it is imported, for the ssh:// connections it would make
    itself; this tool has the ssh binary make them (``use_ssh_client``), so paramiko goes unused and
    importing it cost every command that talks to an engine 0.18 s of its start.  (importlib's
    LazyLoader does not help: the import statement itself reads the module's ``__spec__``.)"""
    if "paramiko" not in sys.modules and importlib.util.find_spec("paramiko") is not None:
        sys.modules["paramiko"] = _DeferredModule("paramiko")


def _engine_environ(engine: Engine) -> dict[str, str]:
    env = {}
    if engine.host:
        env["DOCKER_HOST"] = engine.host
    if engine.tls_verify:
        env["DOCKER_TLS_VERIFY"] = "1"
    if engine.cert_path:
        env["DOCKER_CERT_PATH"] = engine.cert_path
    return env


def engine_info(client) -> dict:
    """What identifies the engine (asked once per client)."""
    if client not in _infos:
        info = client.info()
        _infos[client] = {"id": info.get("ID", ""), "name": info.get("Name", ""),
                              "version": info.get("ServerVersion", ""), "arch": info.get("Architecture", "x86_64"),
                              "root": info.get("DockerRootDir", "")}
    return _infos[client]


def engine_key(client) -> str:
    """A short stable name of the engine for lock files (processes on one host share its locks).

    Docker 20.10 derives ``ID`` from ``/etc/docker/key.json``, so two engines
    on one machine report the same ID: the host name and data root (which
    two engines cannot share) tell them apart.
    """
    info = engine_info(client)
    return sha256_bytes(f"{info['id']}\n{info['name']}\n{info['root']}".encode())[:12]


def inspect(client, ref: str) -> dict | None:
    import docker.errors

    try:
        return client.inspect_image(ref)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code == 404:
            return None
        raise


def tag(client, image_id: str, ref: str) -> None:
    repository, _, version = ref.rpartition(":")
    client.tag(image_id, repository, version)


# --- build contexts ----------------------------------------------------------------------


def context_tar(files: dict[str, bytes | Path], executables: frozenset[str] = frozenset()) -> io.BytesIO:
    """A build context: files given by their bytes or read from a path (ownership and mtimes normalised)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if name in executables else 0o644
            if isinstance(data, Path):
                info.size = data.stat().st_size
                with data.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


# --- builds ------------------------------------------------------------------------------

STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


def stream_build(client, context: io.BytesIO, log_path: Path, what: str, buildargs: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None, nocache: bool = False, dockerfile: str = "Dockerfile",
                 target: str | None = None, secret_args: dict[str, str] | None = None) -> str:
    """Run one build (untagged), logging to ``log_path``; return the image ID.

    ``secret_args`` are build arguments the engine never records (its
    predefined proxy arguments: not in the history, not in the cache key);
    they are not written to the log.
    """
    import docker.errors

    log_path.parent.mkdir(parents=True, exist_ok=True)
    image_id = None
    last_step = "(before the first step)"
    progress = console.Progress(what)
    started = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"# build of {what}\n# build arguments: {redact(str(sorted((buildargs or {}).items())))}\n")
        try:
            # The context as bytes, not as a stream: requests sends a stream in 8 KiB writes, each waiting for
            # the GIL while another thread runs Python (keystone's 8 MB context took 0.2-1.7 s with the SBOM's
            # imports in the background); bytes go in one write.
            stream = client.build(
                fileobj=context.getvalue(), custom_context=True, dockerfile=dockerfile, target=target,
                buildargs={**(buildargs or {}), **(secret_args or {})}, labels=labels or {}, rm=True, forcerm=True,
                nocache=nocache, pull=False, decode=True, use_config_proxy=False,
            )
            for item in stream:
                if "stream" in item:
                    chunk = console.strip_ansi(redact(item["stream"]))
                    match = STEP_RE.match(chunk.strip())
                    if match:  # a step log with durations: where the time of a build went
                        log.write(f"[{time.monotonic() - started:7.1f}s] ")
                    log.write(chunk)
                    if match:
                        last_step = f"step {match.group(1)}/{match.group(2)}: {match.group(3)}"
                        progress.update(last_step[:100])
                    elif chunk.strip() and not chunk.startswith(" ---> "):
                        progress.update(f"{last_step[:60]} | {chunk.strip().splitlines()[-1][:50]}")
                elif "error" in item:
                    message = redact(item["error"].strip())
                    log.write(f"ERROR: {message}\n")
                    if "no space left on device" in message.lower():
                        raise DiskFullError(f"{what}: the Docker engine ran out of space at {last_step}",
                                            hint="free space in the engine's data root (docker system prune), then rerun")
                    raise ImageBuildError(f"{what}: image build failed at {last_step}\n    {message}",
                                          hint=f"full build log: {log_path}")
                elif "aux" in item and "ID" in item["aux"]:
                    image_id = item["aux"]["ID"]
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"{what}: the engine refused the build: {redact(str(exc.explanation or exc))}",
                                  hint=f"build log: {log_path}") from None
        finally:
            progress.done()
    if image_id is None:
        raise ImageBuildError(f"{what}: the engine reported no image ID", hint=f"build log: {log_path}")
    return image_id


def ensure_image(client, settings: Settings, ref: str, make: Callable[[], str], what: str,
                 force: bool = False) -> tuple[str, bool]:
    """The image tagged ``ref``, made by ``make()`` (returning an image ID) only if the tag is absent.

    The tag names the image's inputs (content-addressed), so an existing tag
    is reused and never moved to another image; a lock per tag on this
    engine makes a concurrent run wait for the first build and reuse it.
    With a layer cache, an absent tag is first pulled from the cache, and
    what is made (or was made before the cache was set) is pushed to it.
    Returns (image ID, whether it was made now).
    """
    existing = inspect(client, ref)
    if existing is not None and not force:
        layer_cache.store(client, settings, ref, existing)
        return existing["Id"], False
    lock = settings.layout.cache_lock(f"engine-{engine_key(client)}-{sha256_bytes(ref.encode())[:16]}")
    with locks.hold(lock, f"the image {ref} (being built by another run on this engine)"):
        existing = inspect(client, ref)
        if existing is not None and not force:
            layer_cache.store(client, settings, ref, existing)
            return existing["Id"], False
        pulled = None if force else layer_cache.fetch(client, settings, ref, what)
        if pulled is not None:
            return pulled, False
        image_id = make()
        if force or inspect(client, ref) is None:
            tag(client, image_id, ref)  # --force is the one case where a tag moves: the user asked to rebuild
        made = inspect_present(client, ref)
        layer_cache.store(client, settings, ref, made)
        return made["Id"], True


def inspect_present(client, ref: str) -> dict[str, Any]:
    """``inspect`` of an image this run has just made, tagged or checked: it is on the engine."""
    found = inspect(client, ref)
    assert found is not None, f"the engine has no image {ref}"
    return found


def context_image(client, settings: Settings, name: str, digest: str, make_context: Callable[[], io.BytesIO],
                  log_path: Path) -> tuple[str, bool]:
    """An image whose only layer is a tree or a set of files (an emulated named build context), by content.

    ``make_context`` returns the layer as a tar stream; it is imported as an
    image (``docker import``: no build, no container).  Returns (tag, whether
    it was made now).
    """
    ref = f"{settings.image_prefix}/context-{name}:{digest[:24]}"

    def make() -> str:
        import json

        log_path.parent.mkdir(parents=True, exist_ok=True)
        response = client.import_image_from_data(make_context().getvalue())
        lines = [json.loads(line) for line in str(response).splitlines() if line.strip().startswith("{")]
        log_path.write_text("".join(f"{line}\n" for line in lines))
        image = next((line["status"] for line in lines if str(line.get("status", "")).startswith("sha256:")), None)
        if image is None:
            error = next((line.get("error") or line.get("message") for line in lines if "error" in line or "message" in line),
                         str(response)[:300])
            raise ImageBuildError(f"context {name}: the engine did not import it: {redact(str(error))}", hint=f"log: {log_path}")
        return image

    _, built = ensure_image(client, settings, ref, make, f"context {name}")
    return ref, built


TEMPORARY = "io.openstack-patches.temporary"  # label of a throw-away container: "<host>:<pid>" of the run that made it


def _remove_orphans(client) -> None:
    """Remove the throw-away containers that runs on this host left when killed (kill -9 skips their removal);
    a live run's containers, and other hosts', are left alone."""
    import docker.errors

    host = socket.gethostname()
    for found in client.containers(all=True, filters={"label": TEMPORARY}):
        owner, _, pid = (found.get("Labels") or {}).get(TEMPORARY, "").rpartition(":")
        if owner == host and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):  # another run removed it first
                client.remove_container(found["Id"], force=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_container(client, image: str, command: list[str], what: str) -> bytes:
    """Run ``command`` in a throw-away container of ``image``; return its stdout (stderr in the error)."""
    return run_with_files(client, image, command, what)[0]


def run_with_files(client, image: str, command: list[str], what: str, put: tuple[str, bytes] | None = None,
                   get: str | None = None, shm_size: int | None = None,
                   environment: dict[str, str] | None = None) -> tuple[bytes, bytes | None]:
    """Run ``command`` in a throw-away container of ``image``, with no network, as root: ``put`` (directory,
    tar archive) is unpacked into it first, and the file ``get`` read from it after (as a tar archive of that
    one file).  Returns (stdout, that archive); a failed command raises with its stderr."""
    import docker.errors
    import requests

    container = None
    try:
        _remove_orphans(client)
        host_config = client.create_host_config(shm_size=shm_size) if shm_size else None
        container = client.create_container(image, command=command, user="root", network_disabled=True,
                                            entrypoint=[], labels={TEMPORARY: f"{socket.gethostname()}:{os.getpid()}"},
                                            host_config=host_config, environment=environment)
        if put is not None:
            client.put_archive(container, put[0], put[1])
        client.start(container)
        status = client.wait(container, timeout=600)
        out = client.logs(container, stdout=True, stderr=False)
        if status.get("StatusCode", 1) != 0:
            err = client.logs(container, stdout=False, stderr=True).decode("utf-8", "replace").strip()
            raise ImageBuildError(f"{what}: {' '.join(command[:2])} failed in {image[:19]} (exit {status.get('StatusCode')}): {err[-500:]}")
        archive = b"".join(client.get_archive(container, get)[0]) if get else None
        return out, archive
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:  # the engine failed, not the command
        raise ImageBuildError(f"{what}: the engine could not run a container of {image[:19]}: {redact(str(exc))}",
                              hint=f"the image must exist and hold {command[0]}; check the engine too "
                                   "(`docker info`, its free space), then rerun") from None
    finally:
        if container is not None:
            # the engine is gone; the next run on this host removes the container (_remove_orphans)
            with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                client.remove_container(container, force=True)
