"""Glue between invoke tasks and the pipeline: settings, flags, errors and exit codes.

``@entry`` wraps every task: a ``PipelineError`` becomes one ``error:``
message and its exit code; Ctrl-C or SIGTERM exit 130 with a message; a full
disk or an unwritable work directory is named as such; anything else is a
bug, reported as one ``internal error:`` line naming a log file that holds
the traceback (exit 1).  No traceback ever reaches the terminal, not even
for the settings files invoke reads itself before any task runs
(``read_settings_files``).
"""

from __future__ import annotations

import datetime
import errno
import functools
import gc
import json
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from invoke.exceptions import Exit

from pipeline.core import console
from pipeline.core.errors import (
    ConfigError,
    Interrupted,
    PipelineError,
    UsageError,
    WorkdirNotWritableError,
)
from pipeline.core.files import disk_full, is_disk_full, is_not_writable, name_places
from pipeline.core.redact import redact

if TYPE_CHECKING:
    from pipeline.core.origins import Layer, Origin
    from pipeline.core.releases import Project
    from pipeline.core.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("table", "json")
_loaded: dict[str, Any] = {}


def read_settings_files() -> None:
    """Have invoke read ``invoke.yaml`` and the file of ``invoke -f`` through ``yamlfile``.

    invoke reads them itself, after importing tasks.py and before any task
    runs, so a YAML error, a ``pipeline:`` that is no mapping, or a file type
    it does not know would end in its traceback.  Each becomes one error
    naming the file and line (exit 2) instead.
    """
    from invoke.config import Config
    from invoke.exceptions import UnknownFileType

    def load(config: Any, path: str) -> Any:
        if not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, "no such file", path)  # invoke goes on to its next candidate
        try:
            return settings_file(Path(path))
        except PipelineError as error:
            fail(error)

    load_runtime = Config.load_runtime

    def runtime(config: Any, merge: bool = True) -> None:
        try:
            load_runtime(config, merge)
        except UnknownFileType:
            fail(ConfigError(f"{config._runtime_path}: invoke -f reads settings from .yaml, .yml or .json files",
                             hint="rename the file, or give a YAML file"))

    # invoke has no hook for either: its file loaders and runtime loading are replaced on purpose.
    Config._load_yaml = Config._load_yml = Config._load_json = load  # type: ignore[method-assign, assignment]
    Config.load_runtime = runtime  # type: ignore[method-assign, assignment]


def settings_file(path: Path) -> dict[str, Any]:
    """A settings file's data (YAML, or JSON): a mapping whose ``pipeline:`` (if present) is a mapping."""
    from pipeline.core import yamlfile

    if path.suffix == ".json":
        try:
            data, located = json.loads(path.read_text(encoding="utf-8")), yamlfile.Located(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f"{path}:{exc.lineno}:{exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(path)
            raise ConfigError(f"{where}: invalid JSON: {getattr(exc, 'msg', exc)}", hint="fix the syntax and rerun") from None
    else:
        data, located = yamlfile.load(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a settings file is a mapping (pipeline: {{key: value}}), not a {type(data).__name__}",
                          hint="see invoke.yaml next to tasks.py for its form")
    if "pipeline" in data and not isinstance(data["pipeline"], dict):
        raise ConfigError(f"{located.where('pipeline')}: pipeline: must be a mapping of settings, not "
                          f"{data['pipeline']!r}", hint="e.g. pipeline:\n    workdir: /srv/build")
    return data


def settings_from(ctx: Any) -> Settings:
    """The settings (invoke configuration ``pipeline:``), validated."""
    from pipeline.core.settings import Settings

    runtime = getattr(ctx.config, "_runtime_path", None)
    if runtime and not getattr(ctx.config, "_runtime_found", False):  # invoke ignores a -f file it cannot find
        raise ConfigError(f"{runtime}: the settings file given to invoke -f does not exist",
                          hint="check the path; nothing was read or written")
    raw = ctx.config.get("pipeline", {}) or {}
    return Settings.from_mapping(dict(raw))


def config_layers(ctx: Any) -> list[Layer]:
    """invoke's configuration layers, lowest first, each with its ``pipeline:`` block (see ``origins``).

    invoke keeps no record of where a merged value came from; its layers
    are private attributes, read here only, so a change in invoke breaks
    one function."""
    from pipeline.core.origins import DEFAULT, ENVIRONMENT, Layer

    config = ctx.config

    def block(data: Any) -> dict[str, Any]:
        return dict((data or {}).get("pipeline") or {})

    layers = [Layer(DEFAULT, "", block(config._defaults) | block(config._collection))]
    for name, source in (("system", "system file"), ("user", "user file"), ("project", "project file")):
        if getattr(config, f"_{name}_found", None):
            layers.append(Layer(source, str(getattr(config, f"_{name}_path")), block(getattr(config, f"_{name}"))))
    layers.append(Layer(ENVIRONMENT, "", block(config._env)))
    if getattr(config, "_runtime_found", None):
        layers.append(Layer("-f file", f"invoke -f {config._runtime_path}", block(config._runtime)))
    return layers


def effective_settings(ctx: Any, offline_flag: bool = False) -> list[Origin]:
    """Every setting's value as a task would use it, and where it came from (``invoke config``)."""
    from dataclasses import replace

    from pipeline.core.origins import FLAG, Layer, origins

    settings, layers = settings_from(ctx), config_layers(ctx)
    if offline_flag:
        settings = replace(settings, network=replace(settings.network, offline=True))
        layers.append(Layer(FLAG, "--offline", {"offline": True}))
    return origins(layers, settings, os.environ)


def project_from(ctx: Any) -> Project:
    """Settings (invoke configuration ``pipeline:``) and every release, loaded and validated once per run."""
    from pipeline.core.git import configure
    from pipeline.core.releases import load_project

    settings = settings_from(ctx)
    configure(settings.network.tool_env() if not settings.offline else settings.network.proxy_env())
    project = load_project(settings)
    _loaded["workdir"] = settings.workdir
    name_places({settings.workdir: "the work directory", settings.cache_dir: "the cache (cache_dir)"})
    return project


def offline(project: Project, flag: bool) -> Project:
    """The project with ``--offline`` applied (a flag on the command line wins over the setting)."""
    if not flag or project.settings.offline:
        return project
    from dataclasses import replace

    network = replace(project.settings.network, offline=True)
    return replace(project, settings=replace(project.settings, network=network))


def positive_int(value: Any, flag: str, default: int = 1) -> int:
    """A count from the command line (taken as a string, so that a bad value gets our message, not a traceback)."""
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r} is not a number", hint=f"e.g. {flag} 2") from None
    if number < 1:
        raise UsageError(f"{flag} must be at least 1, not {number}")
    return number


def output_format(value: str | None) -> str:
    value = value or "table"
    if value not in FORMATS:
        raise UsageError(f"--format {value!r} is not known", hint=f"use one of {', '.join(FORMATS)}")
    return value


def _log_internal_error() -> Path | None:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for directory in (_loaded.get("workdir", Path("build")) / "logs", Path(tempfile.gettempdir())):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = (directory / f"internal-error-{stamp}-{os.getpid()}.log").resolve()
            path.write_text(redact(f"{' '.join(sys.argv)}\n\n{traceback.format_exc()}"))
            return path
        except OSError:
            continue
    return None


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def _exit_now(code: int) -> None:
    """Exit with ``code``; when worker threads still run (a build step), do not wait for them."""
    sys.stdout.flush()
    sys.stderr.flush()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        os._exit(code)
    raise Exit(code=code)


def fail(error: PipelineError) -> None:
    console.report_error(error)
    _exit_now(error.exit_code)


def entry(func: F) -> F:
    """Turn every way a task can fail into one clear message and a documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)
        try:
            result = func(*args, **kwargs)
            # The task is done: the collections of interpreter shutdown would walk every object
            # left (cyclonedx's and jsonschema's alone take 0.3 s); frozen ones are skipped.
            gc.freeze()
            return result
        except Exit:
            raise
        except PipelineError as error:
            fail(error)
        except KeyboardInterrupt:
            fail(Interrupted("interrupted; every file and tree is as it was before the step that was running",
                             hint="rerun the command: it picks up from what is complete"))
        except OSError as exc:
            where = exc.filename or _loaded.get("workdir", "the work directory")
            if is_disk_full(exc):
                fail(disk_full(where))
            if is_not_writable(exc):
                fail(WorkdirNotWritableError(f"cannot write {where}: {exc.strerror}",
                                             hint="make the work directory and cache writable, or point workdir/cache_dir elsewhere"))
            raise_internal()
        except Exception:  # noqa: BLE001 - a bug: say so once, keep the traceback in a file
            raise_internal()

    return wrapper  # type: ignore[return-value]


def raise_internal() -> None:
    path = _log_internal_error()
    exc = sys.exc_info()[1]
    summary = redact(f"{type(exc).__name__}: {exc}".splitlines()[0])[:300]
    console.report_error(f"internal error: {summary}\n  the traceback is in {path or '(could not be written)'}; "
                         "please report it with that file")
    _exit_now(1)
