"""The one exception hierarchy: every failure the user can cause or fix.

Each error carries a message naming the offending file, line or hunk, a hint
saying what to do, and an exit code that is distinct per kind of failure, so
scripts and CI can tell "your patch no longer applies" from "your YAML is
broken" without parsing text.  Modelled on cibuildwheel's ``errors.py``.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class; never raised directly."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(PipelineError):
    """Malformed or inconsistent configuration (YAML, settings, layout)."""

    exit_code = 2


class UnknownReleaseError(ConfigError):
    exit_code = 3


class UnknownComponentError(ConfigError):
    exit_code = 4


class OverrideError(ConfigError):
    """A line of ``overrides/<release>/constraints.txt`` is malformed or conflicting."""

    exit_code = 5


class FetchError(PipelineError):
    """Upstream source could not be obtained (git remote, package index, URL)."""

    exit_code = 10


class IntegrityError(FetchError):
    """A downloaded artefact does not match its published hash."""

    exit_code = 11


class PatchApplyError(PipelineError):
    """A patch does not apply to the source at its configured ref."""

    exit_code = 20


class UnsafePatchError(PipelineError):
    """A patch would write outside the tree, into ``.git`` or through a symlink."""

    exit_code = 21


class PatchFormatError(PipelineError):
    """A patch file is not a diff git can read."""

    exit_code = 22


class TestsFailedError(PipelineError):
    """Upstream unit tests failed on a patched tree."""

    __test__ = False  # not a pytest test class
    exit_code = 30


class TestEnvironmentError(PipelineError):
    """The virtual environment for upstream unit tests could not be installed."""

    __test__ = False
    exit_code = 31


class DockerUnavailableError(PipelineError):
    """No Docker engine answers at DOCKER_HOST or the local socket."""

    exit_code = 40


class BaseImageError(PipelineError):
    """A base image could neither be pulled nor bootstrapped."""

    exit_code = 41


class ImageBuildError(PipelineError):
    """A Dockerfile step failed."""

    exit_code = 42


class PushError(PipelineError):
    exit_code = 43


class SbomError(PipelineError):
    exit_code = 50
