"""Where each setting's value came from: what ``invoke config`` prints.

invoke merges its configuration from layers, lowest first: the defaults
tasks.py hands it from ``settings.OPTIONS``, system and user files,
``invoke.yaml``, ``INVOKE_PIPELINE_*`` variables, the file of ``invoke -f``.
``Layer`` is one of them as ``cli`` reads it; ``origins`` names, for every
option, the value the run uses (paths resolved, proxies taken from the
environment when unset) and the layers that set it, highest first.  Values
may hold credentials: they are printed only through ``console``, which
redacts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.console import Column, Report, Table
from pipeline.core.redact import redact
from pipeline.core.settings import NETWORK_KEYS, OPTIONS, Settings

DEFAULT = "default"
ENVIRONMENT = "environment"
FLAG = "flag"
_PROXIES = ("http_proxy", "https_proxy", "no_proxy")


@dataclass(frozen=True)
class Layer:
    """One source of invoke's configuration and the ``pipeline:`` block it holds."""

    source: str  # default | system file | user file | project file | environment | -f file | flag
    origin: str  # the file or flag ("" for the defaults and the environment, named per key)
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Origin:
    key: str
    value: Any
    default: Any
    sources: tuple[tuple[str, str], ...]  # (source, origin), the one that wins first

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.key, "value": self.value, "default": self.default,
                "from": [{"source": s, "origin": o} for s, o in self.sources]}

    @property
    def shown_from(self) -> str:
        return " + ".join(origin or source for source, origin in self.sources)


def effective(settings: Settings, key: str) -> Any:
    """The value of a setting as the run uses it, in plain JSON types."""
    value = getattr(settings.network if key in NETWORK_KEYS else settings, key)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    return "" if value is None else value


def _env_names(key: str, value: Any) -> str:
    if isinstance(value, Mapping):  # invoke reads a mapping's entries one variable each
        return ", ".join(f"INVOKE_PIPELINE_{key}_{sub}".upper() for sub in value)
    return f"INVOKE_PIPELINE_{key.upper()}"


def origins(layers: Sequence[Layer], settings: Settings, environ: Mapping[str, str]) -> list[Origin]:
    """Every option with its effective value and where it came from."""
    found = []
    for option in OPTIONS:
        setting = [layer for layer in layers if option.key in layer.values]
        # invoke merges mappings key by key: every layer adding entries counts; otherwise the last layer wins
        mapping = option.kind == "mapping"
        setting = ([layer for layer in setting if layer.values[option.key]] if mapping else []) or setting[-1:]
        sources = [(layer.source, _env_names(option.key, layer.values[option.key]) if layer.source == ENVIRONMENT
                    else layer.origin) for layer in reversed(setting)]
        value = effective(settings, option.key)
        if option.key in _PROXIES and value and not (setting and setting[-1].values[option.key]):
            variable = next(name for name in (option.key.upper(), option.key) if environ.get(name))
            sources = [(ENVIRONMENT, variable)]
        found.append(Origin(option.key, value, option.default, tuple(sources) or ((DEFAULT, ""),)))
    return found


def shown(value: Any) -> str:
    """A value in the table, as it would be written in YAML (redacted before the table measures its width)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return redact("{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}")
    return '""' if value == "" else redact(str(value))


def as_report(found: list[Origin]) -> Report:
    """What ``invoke config`` prints: a row per setting."""
    return Report([o.to_dict() for o in found],
                  [Table([Column("setting", "key"), Column("value", lambda r: shown(r["value"])), Column("from")],
                         [{"key": o.key, "value": o.value, "from": o.shown_from} for o in found])])
