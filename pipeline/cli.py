"""Glue between invoke tasks and the pipeline: settings, project loading, exit codes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from invoke import Exit

from . import console
from .config import Project, Settings, load_project
from .errors import PipelineError

F = TypeVar("F", bound=Callable[..., Any])


def project_from(ctx: Any) -> Project:
    """Load settings (invoke.yaml ``pipeline:`` block) and every release, once per task."""
    raw = ctx.config.get("pipeline", {}) or {}
    return load_project(Settings.from_mapping(dict(raw)))


def reports_errors(func: F) -> F:
    """Turn a PipelineError into one clear message on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PipelineError as error:
            console.report_error(error)
            raise Exit(code=error.exit_code) from None

    return wrapper  # type: ignore[return-value]
