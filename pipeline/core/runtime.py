"""What an image needs to run in production: ``releases/<R>/runtime.yaml``, typed and validated once.

Owns, per service of a release: the Python distributions it gets beyond its
own requirements (a database driver, a memcached client, the extras
operators use), which the release's upper-constraints pin; the Debian
packages it gets (a declared list, and what the service's own
``bindep.txt`` names for the runtime profile, evaluated with OpenStack's
bindep for the image's Debian, less what the release excludes); the WSGI
server its API runs behind (``service_defaults.<service>.api_deployment``
in ``release.yaml``); and every process of the service with its exact
command, which images publish as labels and ``invoke smoke`` runs.  Also the
headers the release's build base needs for the sdists it compiles.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pipeline.core import yamlfile
from pipeline.core.errors import ConfigError, ValueTypeError

VENV = "/var/lib/openstack"
FILES_DIR = "/usr/share/openstack-patches"  # files of the image's own making (the httpd configuration)
DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
PROCESS_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
DEBIAN_VERSIONS = {"bullseye": "11", "bookworm": "12", "trixie": "13"}
API_DEPLOYMENTS = ("uwsgi", "httpd+WSGI", "httpd+ProxyPass")
DEFAULT_API_DEPLOYMENT = "uwsgi"
# The Debian packages of each WSGI server (ProxyPass: the service's own server, behind an httpd of the site's).
SERVER_PACKAGES = {"uwsgi": ("uwsgi-core", "uwsgi-plugin-python3"),
                   "httpd+WSGI": ("apache2-bin", "libapache2-mod-wsgi-py3"), "httpd+ProxyPass": ()}


@dataclass(frozen=True)
class Declared:
    """A value of runtime.yaml with the place that set it (``path:line``), for messages."""

    value: str
    where: str


@dataclass(frozen=True)
class Process:
    """One process of a service: what a deployment runs in a container of the image."""

    name: str
    command: tuple[str, ...]
    port: int | None = None  # where it answers HTTP (an API), for health checks and deployments
    wsgi: str = ""  # module:callable an API serves, or the path of a WSGI script (pbr's wsgi_scripts)
    server: str = ""  # uwsgi | httpd+WSGI | "" (its own command)
    static: tuple[tuple[str, str], ...] = ()  # (URL prefix, directory) the WSGI server serves as files

    def label(self) -> str:
        """The image label's value: JSON a deployment tool reads."""
        data: dict[str, Any] = {"command": list(self.command)}
        if self.port is not None:
            data["port"] = self.port
        if self.wsgi:
            data["wsgi"] = self.wsgi
            data["server"] = self.server
        if self.static:
            data["static"] = dict(self.static)
        return json.dumps(data, separators=(",", ":"))

    def httpd_config(self, python: str) -> str | None:
        """The Apache httpd configuration an ``httpd+WSGI`` process starts with (``None`` for other servers)."""
        if self.server != "httpd+WSGI":
            return None
        if self.wsgi.startswith("/"):
            script, attribute = self.wsgi, "application"
        else:
            module, _, attribute = self.wsgi.partition(":")
            script = f"{VENV}/lib/python{python}/site-packages/{module.replace('.', '/')}.py"
        static = "".join(HTTPD_STATIC.format(url=url, directory=directory) for url, directory in self.static)
        return HTTPD_CONFIG.format(name=self.name, port=self.port, venv=VENV, script=script, callable=attribute) + static


# Apache httpd with mod_wsgi as the image's unprivileged user: everything it writes goes to /tmp,
# its logs to the container's output.  Only Debian's apache2-bin (no apache2 scripts, no perl needed).
HTTPD_CONFIG = """\
# {name}: Apache httpd with mod_wsgi in daemon mode (made by openstack-patches; see runtime.yaml)
ServerRoot /usr/lib/apache2
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule wsgi_module modules/mod_wsgi.so
ServerName localhost
Listen {port}
PidFile /tmp/{name}-httpd.pid
Mutex file:/tmp default
ErrorLog /dev/stderr
LogFormat "%h %l %u %t \\"%r\\" %>s %b %D" timed
CustomLog /dev/stdout timed
WSGISocketPrefix /tmp/{name}-wsgi
WSGIDaemonProcess {name} processes=1 threads=1 python-home={venv} display-name=%{{GROUP}}
WSGIProcessGroup {name}
WSGIApplicationGroup %{{GLOBAL}}
WSGIPassAuthorization On
WSGIChunkedRequest On
LimitRequestBody 0
WSGIScriptAlias / {script} process-group={name} application-group=%{{GLOBAL}}
WSGICallableObject {callable}
<Location />
    Require all granted
</Location>
"""
# A directory of files served as they are (horizon's collected static files), before the application.
HTTPD_STATIC = """\
LoadModule alias_module modules/mod_alias.so
Alias {url} {directory}
<Directory {directory}>
    Require all granted
</Directory>
"""


def uwsgi_command(wsgi: str, port: int, static: tuple[tuple[str, str], ...] = ()) -> tuple[str, ...]:
    """uWSGI serving ``wsgi`` over HTTP.  Tuning (UWSGI_PROCESSES, UWSGI_THREADS, ...) goes in the
    environment: uWSGI reads every option from ``UWSGI_<OPTION>`` too.  ``Connection: close``: its HTTP socket
    closes each connection after the response, and a client that kept it for the next request would see it
    reset (as devstack's uWSGI configuration says too).  A path is a WSGI script (``--wsgi-file``); each
    static mapping is served as files (``--static-map``)."""
    application = ("--wsgi-file", wsgi) if wsgi.startswith("/") else ("--module", wsgi)
    return ("uwsgi", "--plugin", "python3", "--http-socket", f":{port}", "--virtualenv", VENV,
            *application, "--master", "--enable-threads", "--lazy-apps", "--die-on-term", "--need-app",
            "--buffer-size", "65535", "--add-header", "Connection: close",
            *(arg for url, directory in static for arg in ("--static-map", f"{url}={directory}")))


@dataclass(frozen=True)
class ServiceRuntime:
    service: str
    python: tuple[Declared, ...]  # requirements installed beyond the service's own (names, extras, exact pins)
    packages: tuple[Declared, ...]  # Debian packages declared (defaults, the service's, its WSGI server's)
    api_deployment: str
    processes: tuple[Process, ...]

    def process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)


@dataclass(frozen=True)
class RuntimeDeclaration:
    """``releases/<R>/runtime.yaml``: what the release's images carry to run."""

    path: Path
    build_packages: tuple[str, ...]
    bindep_profiles: tuple[str, ...]
    bindep_exclude: tuple[str, ...]
    services: Mapping[str, ServiceRuntime]

    def of(self, service: str) -> ServiceRuntime:
        """What runtime.yaml declares for ``service`` (nothing, for a release without the file)."""
        return self.services.get(service) or ServiceRuntime(service, (), (), DEFAULT_API_DEPLOYMENT, ())


EMPTY = RuntimeDeclaration(Path("runtime.yaml"), (), ("default",), (), MappingProxyType({}))
TOP_KEYS = {"defaults", "build_packages", "services"}
DEFAULT_KEYS = {"python", "packages", "bindep"}
SERVICE_KEYS = {"python", "packages", "processes"}
PROCESS_KEYS = {"wsgi", "command", "port", "static"}


def _known(mapping: dict[str, Any], allowed: set[str], located: yamlfile.Located, *keys: str) -> None:
    unknown = sorted(set(map(str, mapping)) - allowed)
    if unknown:
        where = located.where(*keys) if keys else str(located.path)
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}", hint=f"allowed: {', '.join(sorted(allowed))}")


def _strings(value: Any, located: yamlfile.Located, *keys: str) -> list[Declared]:
    return [Declared(yamlfile.expect_str(item, located, *keys, str(i)), located.where(*keys, str(i)))
            for i, item in enumerate(yamlfile.expect_list(value, located, *keys))]


def _python(items: list[Declared]) -> list[Declared]:
    for item in items:
        try:
            requirement = Requirement(item.value)
        except InvalidRequirement as exc:
            raise ConfigError(f"{item.where}: {item.value!r} is not a Python requirement: {exc}",
                              hint="name a distribution (PyMySQL), with extras (oslo.cache[dogpile]) or an exact pin (x==1.0)") from None
        exact = [s for s in requirement.specifier if s.operator in ("==", "===")]
        if requirement.url or requirement.marker or (requirement.specifier and not exact):
            raise ConfigError(f"{item.where}: {item.value!r}: only a name, extras and an exact pin are allowed",
                              hint="the release's upper-constraints pin the version; an exact pin is for a package they lack")
    return items


def _packages(items: list[Declared]) -> list[Declared]:
    for item in items:
        if not DEBIAN_PACKAGE.match(item.value):
            raise ConfigError(f"{item.where}: {item.value!r} is not a Debian package name")
    return items


def _port(value: Any, located: yamlfile.Located, *keys: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueTypeError(f"{located.where(*keys)}: {'.'.join(keys)} must be a port number, not {value!r}")
    return value


def _process(service: str, name: str, raw: Any, deployment: str, located: yamlfile.Located) -> Process:
    keys = ("services", service, "processes", name)
    if not PROCESS_NAME.match(name):
        raise ConfigError(f"{located.where(*keys)}: process name {name!r} must be lower-case letters, digits and -")
    spec = yamlfile.expect_mapping(raw, located, *keys)
    _known(spec, PROCESS_KEYS, located, *keys)
    port = _port(spec.get("port"), located, *keys, "port")
    if ("wsgi" in spec) == ("command" in spec):
        raise ConfigError(f"{located.where(*keys)}: process {name} needs either wsgi (module:callable of an API) "
                          "or command (the argv of a process)")
    if "command" in spec:
        if "static" in spec:
            raise ConfigError(f"{located.where(*keys, 'static')}: static is for a wsgi process (its WSGI server serves "
                              "the files); a command serves its own")
        command = spec["command"]
        if isinstance(command, str):
            command = shlex.split(command)
        if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            raise ValueTypeError(f"{located.where(*keys, 'command')}: command must be a list of strings (the argv)")
        return Process(name, tuple(command), port)
    wsgi = yamlfile.expect_str(spec["wsgi"], located, *keys, "wsgi", example="keystone.wsgi.api:application")
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*|/[\w./-]+", wsgi):
        raise ConfigError(f"{located.where(*keys, 'wsgi')}: wsgi must be module:callable or the absolute path of a "
                          f"WSGI script, not {wsgi!r}")
    static = tuple((str(url), yamlfile.expect_str(directory, located, *keys, "static", str(url)))
                   for url, directory in yamlfile.expect_mapping(spec.get("static"), located, *keys, "static").items())
    if any(not url.startswith("/") or not directory.startswith("/") for url, directory in static):
        raise ConfigError(f"{located.where(*keys, 'static')}: static maps a URL path (/static) to an absolute directory")
    if port is None:
        raise ConfigError(f"{located.where(*keys)}: process {name} serves an API: give its port")
    if deployment == "httpd+ProxyPass":
        raise ConfigError(f"{located.where(*keys)}: {service}'s api_deployment is httpd+ProxyPass (its own server "
                          "behind the site's httpd), so its API is a command, not a wsgi application",
                          hint=f"use command: [...] for {name}, or change service_defaults.{service}.api_deployment in release.yaml")
    if deployment == "uwsgi":
        return Process(name, uwsgi_command(wsgi, port, static), port, wsgi, deployment, static)
    return Process(name, ("/usr/sbin/apache2", "-DFOREGROUND", "-f", f"{FILES_DIR}/{name}-httpd.conf"), port, wsgi,
                   deployment, static)


def load_runtime(directory: Path, services: tuple[str, ...],
                 service_defaults: Mapping[str, Mapping[str, Any]]) -> RuntimeDeclaration:
    """Read ``runtime.yaml`` of a release (absent: images carry only their own requirements)."""
    path = directory / "runtime.yaml"
    if not path.exists():
        return RuntimeDeclaration(path, (), ("default",), (), MappingProxyType({}))
    data, located = yamlfile.load(path)
    located.path = Path("releases", directory.name, path.name)  # as records and messages show it: portable
    data = yamlfile.expect_mapping(data, located)
    _known(data, TOP_KEYS, located)
    defaults = yamlfile.expect_mapping(data.get("defaults"), located, "defaults")
    _known(defaults, DEFAULT_KEYS, located, "defaults")
    bindep = yamlfile.expect_mapping(defaults.get("bindep"), located, "defaults", "bindep")
    _known(bindep, {"profiles", "exclude"}, located, "defaults", "bindep")
    profiles = tuple(d.value for d in _strings(bindep.get("profiles", ["default"]), located, "defaults", "bindep", "profiles"))
    exclude = tuple(d.value for d in _strings(bindep.get("exclude"), located, "defaults", "bindep", "exclude"))
    common_python = _python(_strings(defaults.get("python"), located, "defaults", "python"))
    common_packages = _packages(_strings(defaults.get("packages"), located, "defaults", "packages"))
    build_packages = tuple(d.value for d in _packages(_strings(data.get("build_packages"), located, "build_packages")))
    declared = yamlfile.expect_mapping(data.get("services"), located, "services")
    unknown = sorted(set(map(str, declared)) - set(services))
    if unknown:
        raise ConfigError(f"{located.where('services', unknown[0])}: {', '.join(unknown)} not a service of the release",
                          hint=f"services (release.yaml): {', '.join(services)}")
    result = {}
    for service in services:
        spec = yamlfile.expect_mapping(declared.get(service), located, "services", service)
        _known(spec, SERVICE_KEYS, located, "services", service)
        deployment = str(service_defaults.get(service, {}).get("api_deployment", DEFAULT_API_DEPLOYMENT))
        if deployment not in API_DEPLOYMENTS:
            raise ConfigError(f"{directory / 'release.yaml'}: service_defaults.{service}.api_deployment is {deployment!r}",
                              hint=f"use one of {', '.join(API_DEPLOYMENTS)}")
        processes = yamlfile.expect_mapping(spec.get("processes"), located, "services", service, "processes")
        server = [Declared(p, f"the WSGI server of {deployment} (service_defaults.{service}.api_deployment)")
                  for p in SERVER_PACKAGES[deployment]]
        result[service] = ServiceRuntime(
            service=service,
            python=tuple(_unique([*common_python, *_python(_strings(spec.get("python"), located, "services", service, "python"))],
                                 _distribution)),
            packages=tuple(_unique([*common_packages, *server,
                                    *_packages(_strings(spec.get("packages"), located, "services", service, "packages"))])),
            api_deployment=deployment,
            processes=tuple(_process(service, str(name), raw, deployment, located) for name, raw in processes.items()),
        )
    return RuntimeDeclaration(path, build_packages, profiles, exclude, MappingProxyType(result))


def _unique(items: list[Declared], key: Callable[[str], str] = lambda value: value) -> list[Declared]:
    """The first declaration of each item (a service's own list may repeat a default)."""
    seen: dict[str, Declared] = {}
    for item in items:
        seen.setdefault(key(item.value), item)
    return list(seen.values())


def _distribution(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


# --- bindep ---------------------------------------------------------------------------


def platform_profiles(suite: str) -> list[str]:
    """bindep's platform profiles of a Debian suite (as bindep computes them on that Debian)."""
    profiles = ["platform:dpkg", "platform:debian", "platform:base-py3", f"platform:debian-{suite}"]
    if suite in DEBIAN_VERSIONS:
        profiles.append(f"platform:debian-{DEBIAN_VERSIONS[suite]}")
    return profiles


def bindep_packages(text: str, suite: str, profiles: tuple[str, ...], exclude: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The packages a ``bindep.txt`` names for ``profiles`` on the suite: (kept, excluded by the release)."""
    from bindep.depends import (  # parsley's grammar: 0.3 s per file, only on a change
        Depends,
        DependsException,
    )

    try:
        rules = Depends(text).active_rules([*platform_profiles(suite), *profiles])
    except DependsException as exc:
        raise ConfigError(f"bindep.txt cannot be read: {exc}") from None
    names = list(dict.fromkeys(rule[0] for rule in rules))
    dropped = [n for n in names if any(fnmatch.fnmatchcase(n, pattern) for pattern in exclude)]
    return [n for n in names if n not in dropped], dropped


# --- the image's runtime files ---------------------------------------------------------------

ARCHIVE_EPOCH = 315532800  # 1980-01-01, as every other layer of the images
SERVICE_UID = 42424  # the images' unprivileged openstack user and group (the runtime base makes them)


def runtime_archive(runtime: ServiceRuntime, python: str) -> bytes:
    """The files a service image gets for running: ``/etc/<service>`` (root's, readable by all: where a
    deployment puts the configuration), ``/var/lib/<service>`` (the service user's: its default state path,
    for locks and local files), and the configuration of each httpd process, as one reproducible archive an
    image build ADDs."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, data: bytes | None = None, owner: int = 0, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = ARCHIVE_EPOCH, owner, owner
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, mode
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))

        # Every directory above them too, with the archive's mtime: one the engine makes while unpacking
        # gets the time of the build, and the layer would differ at every build.
        configs = {p.name: text for p in runtime.processes if (text := p.httpd_config(python))}
        for directory in ("etc", "var", "var/lib", *(("usr", "usr/share", FILES_DIR.lstrip("/")) if configs else ())):
            add(directory)
        add(f"etc/{runtime.service}")
        add(f"var/lib/{runtime.service}", owner=SERVICE_UID, mode=0o750)
        if configs:
            for name, text in sorted(configs.items()):
                add(f"{FILES_DIR.lstrip('/')}/{name}-httpd.conf", text.encode())
    return buffer.getvalue()
