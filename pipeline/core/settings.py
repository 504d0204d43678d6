"""Settings: every ``pipeline:`` setting, loaded, typed and validated once.

One table (``OPTIONS``) names each setting, its type, default and meaning:
tasks.py hands its defaults to invoke, and nothing else repeats them.
``Settings.from_mapping`` resolves them from invoke's configuration
(``invoke.yaml``, ``INVOKE_PIPELINE_<KEY>`` variables, ``invoke -f file``)
into frozen dataclasses.  Network settings (offline, index, CA bundle,
proxies) and the Docker engine (``DOCKER_HOST`` and its TLS variables) are
resolved here too, so no stage ever reads the environment on its own.  The
release files are ``releases``'.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipeline.core import yamlfile
from pipeline.core.errors import ConfigError, ValueTypeError
from pipeline.core.layout import Layout
from pipeline.core.redact import public_url, redact, register_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
SOURCE_MODES = ("git", "sdist", "auto")


@dataclass(frozen=True)
class Option:
    key: str
    kind: str  # str | url | path | bool | mapping | choice
    default: Any
    doc: str
    choices: tuple[str, ...] = ()


OPTIONS: tuple[Option, ...] = (
    Option("root", "path", ".", "the repository holding releases/, patches/, overrides/ (relative to tasks.py)"),
    Option("workdir", "path", "build", "generated output (see the README's output table)"),
    Option("cache_dir", "path", "~/.cache/openstack-patches", "git mirrors, sdists, wheels, constraints, test venvs"),
    Option("git_base", "url", "https://opendev.org/openstack", "upstream git URL is {git_base}/{component}; a local path works"),
    Option("repos", "mapping", {}, "per-component git URL overrides"),
    Option("source_mode", "choice", "auto", "git | sdist | auto: where release tags come from", SOURCE_MODES),
    Option("index_url", "url", "https://pypi.org/simple", "PEP 503/691 package index (sdists, wheels, lock resolution)"),
    Option("constraints_url", "url", "https://releases.openstack.org/constraints/upper/{release}",
           "upstream upper-constraints for releases without a snapshot, and for `invoke constraints --update`"),
    Option("pypi_names", "mapping", {"placement": "openstack-placement", "heat": "openstack-heat", "watcher": "python-watcher"},
           "component -> PyPI name where they differ"),
    Option("ca_bundle", "path", "", "extra CA bundle for HTTPS through an intercepting proxy (\"\" = system store)"),
    Option("offline", "bool", False, "never use the network (same as --offline on every task)"),
    Option("http_proxy", "url", "", "proxy for http:// (\"\" = the HTTP_PROXY environment variable)"),
    Option("https_proxy", "url", "", "proxy for https:// (\"\" = HTTPS_PROXY)"),
    Option("no_proxy", "str", "", "hosts that bypass the proxy (\"\" = NO_PROXY)"),
    Option("image_prefix", "str", "openstack-patches", "images are <image_prefix>/<service>:<tag>"),
    Option("registry", "url", "", "registry for `invoke build --push` (host[:port][/path])"),
    Option("cache_registry", "url", "",
           "registry holding the shared layer cache (host[:port][/path]; \"\" = none; `invoke build --cache-from`)"),
    Option("test_commands", "mapping", {}, "per-component upstream test command for testapply (default: stestr run)"),
    Option("gerrit_base", "url", "https://review.opendev.org/openstack",
           "Gerrit's git URL is {gerrit_base}/{component} (patches.import); a local path works"),
    Option("ossa", "url", "https://opendev.org/openstack/ossa",
           "OpenStack security advisories: a git URL (its ossa/ folder is read) or a local folder of OSSA-*.yaml"),
    Option("pypa_advisories", "url", "https://github.com/pypa/advisory-database",
           "PyPI advisories (OSV): a git URL (its vulns/ folder) or a local folder of <package>/*.yaml; \"\" = none"),
)
OPTION_KEYS = {o.key: o for o in OPTIONS}
NETWORK_KEYS = ("offline", "index_url", "ca_bundle", "http_proxy", "https_proxy", "no_proxy")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def defaults() -> dict[str, Any]:
    """Every setting's default, for invoke's configuration: fresh copies, so no caller can change the table."""
    return {o.key: dict(o.default) if isinstance(o.default, Mapping) else o.default for o in OPTIONS}


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Network:
    """How the host reaches the network: resolved once, passed to every download, resolver and install."""

    offline: bool
    index_url: str  # may hold credentials: never print it, use index_public
    ca_bundle: Path | None
    http_proxy: str
    https_proxy: str
    no_proxy: str

    @property
    def index_public(self) -> str:
        return public_url(self.index_url)

    def cafile(self) -> str | None:
        """The CA bundle for TLS: ``ca_bundle``, else the interpreter's default file."""
        if self.ca_bundle:
            return str(self.ca_bundle)
        paths = ssl.get_default_verify_paths()
        return os.environ.get("SSL_CERT_FILE") or paths.cafile or paths.openssl_cafile

    def proxy_env(self) -> dict[str, str]:
        """Proxy variables for child processes (both spellings: tools read one or the other)."""
        env = {}
        for name, value in (("http_proxy", self.http_proxy), ("https_proxy", self.https_proxy), ("no_proxy", self.no_proxy)):
            if value:
                env[name] = env[name.upper()] = value
        return env

    def tool_env(self) -> dict[str, str]:
        """Environment for uv, pip and git run on the host: index, CA, proxies, offline."""
        env = {"UV_INDEX_URL": self.index_url, "PIP_INDEX_URL": self.index_url, **self.proxy_env()}
        cafile = self.cafile()
        if cafile:
            env.update(SSL_CERT_FILE=cafile, PIP_CERT=cafile, REQUESTS_CA_BUNDLE=cafile, GIT_SSL_CAINFO=cafile)
        if self.offline:
            env["UV_OFFLINE"] = "1"
            env["PIP_NO_INDEX"] = "1"
        return env


@dataclass(frozen=True)
class Engine:
    """The Docker engine to talk to, from DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH."""

    host: str  # "" = the local socket
    tls_verify: bool
    cert_path: str

    @property
    def description(self) -> str:
        """The engine's address and how it is reached, for messages (no credentials)."""
        if not self.host:
            return "the local socket (/var/run/docker.sock)"
        shown = public_url(self.host)
        if self.host.startswith("tcp://"):
            if self.tls_verify:
                return f"{shown} (TLS, server verified, client certificate from {self.cert_path or '~/.docker'})"
            return f"{shown} (TLS, server not verified)" if self.cert_path else f"{shown} (plain TCP, no TLS)"
        if self.host.startswith("ssh://"):
            return f"{shown} (over ssh)"
        return shown


@dataclass(frozen=True)
class Settings:
    """The ``pipeline:`` settings block, typed, with paths resolved."""

    root: Path
    workdir: Path
    cache_dir: Path
    git_base: str
    repos: Mapping[str, str]
    source_mode: str
    constraints_url: str
    pypi_names: Mapping[str, str]
    network: Network
    engine: Engine
    image_prefix: str = "openstack-patches"
    registry: str = ""
    test_commands: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    gerrit_base: str = "https://review.opendev.org/openstack"
    cache_registry: str = ""
    ossa: str = ""  # a git URL, or a local folder as an absolute path; "" = none
    pypa_advisories: str = ""

    @property
    def layout(self) -> Layout:
        return Layout(self.root, self.workdir, self.cache_dir)

    @property
    def offline(self) -> bool:
        return self.network.offline

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], root: Path = PROJECT_ROOT, environ: Mapping[str, str] | None = None,
                     settings_file: Path | None = None) -> Settings:
        """Validate the raw block; relative paths are taken from ``root`` (the tasks.py folder)."""
        environ = os.environ if environ is None else environ
        settings_file = settings_file or root / "invoke.yaml"
        unknown = sorted(set(raw) - set(OPTION_KEYS))
        if unknown:
            raise ConfigError(f"unknown pipeline setting(s): {', '.join(unknown)}",
                              hint=f"known settings: {', '.join(OPTION_KEYS)} (`invoke config` lists them)")
        located = _settings_lines(settings_file)
        values: dict[str, Any] = {}
        for option in OPTIONS:
            value = raw.get(option.key, option.default)
            if value is None:
                value = option.default
            values[option.key] = _typed(option, value, environ, located)

        def path(value: str, base: Path) -> Path:
            candidate = Path(value).expanduser()
            return candidate if candidate.is_absolute() else (base / candidate).resolve()

        project_root = path(values["root"], root)
        ca_bundle = path(values["ca_bundle"], project_root) if values["ca_bundle"] else None
        if ca_bundle is not None and not ca_bundle.is_file():
            raise ConfigError(f"pipeline.ca_bundle: {ca_bundle} does not exist",
                              hint="point ca_bundle at a PEM file, or set it to \"\" for the system store")
        network = Network(
            offline=values["offline"],
            index_url=values["index_url"].rstrip("/"),
            ca_bundle=ca_bundle,
            http_proxy=values["http_proxy"] or environ.get("HTTP_PROXY") or environ.get("http_proxy") or "",
            https_proxy=values["https_proxy"] or environ.get("HTTPS_PROXY") or environ.get("https_proxy") or "",
            no_proxy=values["no_proxy"] or environ.get("NO_PROXY") or environ.get("no_proxy") or "",
        )
        engine = Engine(
            host=environ.get("DOCKER_HOST", ""),
            tls_verify=environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0"),
            cert_path=environ.get("DOCKER_CERT_PATH", ""),
        )
        registries = {key: registry_reference(values[key], f"pipeline.{key}") for key in ("registry", "cache_registry")}
        repos = {k: str(v) for k, v in values["repos"].items()}
        for url in (values["git_base"], values["gerrit_base"], values["index_url"], values["constraints_url"],
                    values["registry"], values["cache_registry"], network.http_proxy, network.https_proxy,
                    values["ossa"], values["pypa_advisories"], *repos.values()):
            register_url(url)
        # Not engine.host: the user of ssh://user@host is a login name, not a token (it would mask "root"
        # in every message); a password in any URL is masked by redact's own pattern anyway.
        return cls(
            root=project_root,
            workdir=path(values["workdir"], project_root),
            cache_dir=path(values["cache_dir"], project_root),
            git_base=values["git_base"].rstrip("/"),
            repos=_frozen(repos),
            source_mode=values["source_mode"],
            constraints_url=values["constraints_url"],
            pypi_names=_frozen({str(k): str(v) for k, v in values["pypi_names"].items()}),
            network=network,
            engine=engine,
            image_prefix=values["image_prefix"].strip("/"),
            registry=registries["registry"],
            test_commands=_frozen({str(k): str(v) for k, v in values["test_commands"].items()}),
            gerrit_base=values["gerrit_base"].rstrip("/"),
            cache_registry=registries["cache_registry"],
            ossa=_source(values["ossa"], project_root),
            pypa_advisories=_source(values["pypa_advisories"], project_root),
        )

    def git_url(self, component: str) -> str:
        """Upstream URL: a per-component override, else ``{git_base}/{component}``.

        Local paths become ``file://`` URLs because git ignores ``--depth`` for
        plain paths.
        """
        return local_to_url(self.repos.get(component) or f"{self.git_base}/{component}", self.root)

    def gerrit_url(self, component: str, base: str | None = None) -> str:
        """Gerrit's git URL of a component: ``{gerrit_base}/{component}`` (``base`` overrides the setting)."""
        return local_to_url(f"{(base or self.gerrit_base).rstrip('/')}/{component}", self.root)

    def pypi_name(self, component: str) -> str:
        return self.pypi_names.get(component, component)


def registry_reference(value: str, where: str, error: type[ConfigError] = ConfigError) -> str:
    """A registry as the engine names it in an image reference: ``host[:port][/path]``.

    A scheme or user-info cannot be part of an image reference (the engine
    refuses it, deep in a push), and credentials there would travel into
    messages and logs: both are refused here, the password masked, with the
    form to use and the engine's own login in the hint."""
    text = value.strip().strip("/")
    rest = text.partition("://")[2] or text
    netloc, slash, path = rest.partition("/")
    userinfo, _, host = netloc.rpartition("@")
    if rest == text and not userinfo:
        return text
    register_url(f"//{rest}")  # the password (or token) is masked from here on, in every message and log
    login = f", and log in with `docker login {host}` (pushes and pulls use the engine host's login)"
    raise error(f"{where}: {redact(text)!r} is not a registry as images name it (host[:port][/path])"
                + (": it holds credentials" if userinfo else ""), hint=f"use {host}{slash}{path}" + (login if userinfo else ""))


def is_local(url: str) -> bool:
    """Whether a setting names a local path rather than a URL (``https://``, ``file://``, ``git@host:``)."""
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


def _source(value: str, root: Path) -> str:
    """A git URL as given; a local folder as an absolute path (relative ones are taken from the repository)."""
    value = value.strip()
    if not value or not is_local(value):
        return value.rstrip("/")
    local = Path(value).expanduser()
    return str(local if local.is_absolute() else (root / local).resolve())


def local_to_url(url: str, root: Path) -> str:
    if is_local(url):
        local = Path(url).expanduser()
        return (local if local.is_absolute() else root / local).resolve().as_uri()
    return url


def _settings_lines(path: Path) -> yamlfile.Located:
    try:
        _, located = yamlfile.load(path)
        return located
    except ConfigError:
        return yamlfile.Located(path)


def _typed(option: Option, value: Any, environ: Mapping[str, str], located: yamlfile.Located) -> Any:
    env_name = f"INVOKE_PIPELINE_{option.key.upper()}"
    where = f"pipeline.{option.key} ({located.where('pipeline', option.key)}, {env_name} or a file given to invoke -f)"
    if option.kind == "bool":
        # invoke casts any non-empty environment string to True ("false" included): read it ourselves.
        text = environ.get(env_name)
        if text is not None:
            if text.strip().lower() in _TRUE:
                return True
            if text.strip().lower() in _FALSE:
                return False
            raise ValueTypeError(f"{env_name}={text!r} is not a boolean", hint="use true or false (1 or 0)")
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
            return value.strip().lower() in _TRUE
        raise ValueTypeError(f"{where} is {value!r}, not a boolean", hint="use true or false")
    if option.kind == "mapping":
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise ValueTypeError(f"{where} must be a mapping of component name to string, not {value!r}",
                                 hint=f"e.g. {option.key}: {{nova: \"...\"}}")
        return dict(value)
    if not isinstance(value, str):
        raise ValueTypeError(f"{where} is {value!r} ({type(value).__name__}), not a string",
                             hint=f"quote it in YAML; default: {option.default!r}")
    if option.kind == "choice" and value not in option.choices:
        raise ConfigError(f"{where} is {value!r}", hint=f"use one of {', '.join(option.choices)}")
    return value
