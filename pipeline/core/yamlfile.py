"""YAML files read once, with the line of every value, so type errors can name file and line.

``load`` returns the data and a ``Located`` helper that answers "where is
``services`` / ``base.python``" with ``path:line``.  Values YAML silently
turns into something else (``python: 3.10`` is the float 3.1, ``ref: 28.10``
the float 28.1) are refused with a hint to quote them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from pipeline.core.errors import ConfigError, ValueTypeError


@dataclass
class Located:
    path: Path
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    raw: dict[tuple[str, ...], str] = field(default_factory=dict)  # the scalar as written

    def where(self, *keys: str) -> str:
        line = self.lines.get(tuple(keys))
        return f"{self.path}:{line}" if line else str(self.path)

    def written(self, *keys: str) -> str | None:
        return self.raw.get(tuple(keys))


def _walk(node: yaml.Node, prefix: tuple[str, ...], located: Located) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, str(key_node.value))
            located.lines[key] = value_node.start_mark.line + 1
            if isinstance(value_node, yaml.ScalarNode):
                located.raw[key] = value_node.value
            _walk(value_node, key, located)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key = (*prefix, str(index))
            located.lines[key] = item.start_mark.line + 1
            _walk(item, key, located)


# libyaml's safe loader where PyYAML has it: the releases' YAML files are read at every task's start, ten times
# faster than in pure Python (the same nodes, marks and values).
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(path: Path) -> tuple[Any, Located]:
    """Parse ``path``; syntax errors become a ConfigError with file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    located = Located(path)
    try:
        node = yaml.compose(text, Loader=LOADER)
        data = yaml.load(text, Loader=LOADER)  # a safe loader (LOADER)
    except yaml.YAMLError:
        _syntax_error(path, text)
    if node is not None:
        _walk(node, (), located)
    return data, located


def _syntax_error(path: Path, text: str) -> NoReturn:
    """The error PyYAML's own parser gives (libyaml words its messages differently): its line, column, problem."""
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}", hint="fix the syntax and rerun") from None
    raise ConfigError(f"{path}: invalid YAML", hint="fix the syntax and rerun")


def expect_str(value: Any, located: Located, *keys: str, example: str = "") -> str:
    """A string value; numbers that YAML made of a version-like scalar are refused with a hint."""
    if isinstance(value, str):
        return value
    written = located.written(*keys)
    name = ".".join(keys)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        shown = written if written is not None else str(value)
        hint = f'quote it: {keys[-1]}: "{shown}"'
        if isinstance(value, float) and written is not None and str(value) != written:
            hint += f" (unquoted, YAML reads {written} as the number {value})"
        raise ValueTypeError(f"{located.where(*keys)}: {name} is the number {shown}, not a string", hint=hint)
    kind = type(value).__name__ if value is not None else "empty"
    raise ValueTypeError(f"{located.where(*keys)}: {name} must be a string, not {kind}",
                         hint=f"for example {keys[-1]}: {example or '...'}")


def expect_mapping(value: Any, located: Located, *keys: str) -> dict[str, Any]:
    """A mapping value (absent: empty); anything else is refused with its file and line."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueTypeError(f"{located.where(*keys)}: {'.'.join(keys) or 'the file'} must be a mapping")
    return value


def expect_list(value: Any, located: Located, *keys: str) -> list[Any]:
    """A list value (absent: empty); anything else is refused with its file and line."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueTypeError(f"{located.where(*keys)}: {'.'.join(keys)} must be a list")
    return value
