"""The one exception hierarchy: every failure the user can cause or fix, with its exit code.

Each error carries a message naming the offending file, line, hunk or image,
a hint saying what to do, and an exit code that is distinct per kind of
failure, so scripts and CI can tell "your patch no longer applies" from "your
YAML is broken" without parsing text.  Modelled on cibuildwheel's
``errors.py``: the base class derives from ``BaseException`` so that a broad
``except Exception`` around a library call can never swallow one by accident.

The README's error table is generated from ``EXIT_CODES`` (see
``tests/test_errors.py``), so the two cannot drift apart.
"""

from __future__ import annotations

from pipeline.core.redact import redact


class PipelineError(BaseException):
    """Base class; never raised directly."""

    exit_code = 1
    summary = "internal error"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = redact(message)
        self.hint = redact(hint) if hint else None

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class InternalError(PipelineError):
    exit_code = 1
    summary = "internal error (a bug: the message names the log with the traceback)"


class ConfigError(PipelineError):
    exit_code = 2
    summary = "configuration error (YAML syntax, unknown keys, settings, layout)"


class UnknownReleaseError(ConfigError):
    exit_code = 3
    summary = "unknown release"


class UnknownComponentError(ConfigError):
    exit_code = 4
    summary = "unknown component or service"


class OverrideError(ConfigError):
    exit_code = 5
    summary = "malformed or conflicting constraint override (repeated package, overlapping markers)"


class ValueTypeError(ConfigError):
    exit_code = 6
    summary = "a setting or YAML value of the wrong type (file and line named; quote versions such as \"3.10\")"


class UsageError(ConfigError):
    exit_code = 7
    summary = "bad command-line usage (e.g. --jobs abc, flags that exclude each other)"


class WorkdirNotWritableError(PipelineError):
    exit_code = 8
    summary = "the work directory or cache cannot be written (permissions, read-only file system)"


class DiskFullError(PipelineError):
    exit_code = 9
    summary = "no space left on the device (work directory, cache or the Docker engine's data root)"


class FetchError(PipelineError):
    exit_code = 10
    summary = "upstream source, a package or a constraints file could not be downloaded"


class IntegrityError(FetchError):
    exit_code = 11
    summary = "a download does not match its published sha256"


class GitError(PipelineError):
    """A git command failed unexpectedly; stages turn the expected cases into specific errors."""

    exit_code = 12
    summary = "an unexpected git failure (its full output is shown)"

    def __init__(self, args: tuple[str, ...], cwd: object, returncode: int, stderr: str) -> None:
        self.args_, self.cwd, self.returncode, self.stderr = args, cwd, returncode, redact(stderr)
        where = f" (in {cwd})" if cwd else ""
        super().__init__(f"git {' '.join(args)}{where} failed with exit code {returncode}:\n{stderr.strip()}")


class CacheCorruptError(FetchError):
    exit_code = 13
    summary = "a cache entry is corrupt and --offline forbids fetching it again"


class PatchApplyError(PipelineError):
    exit_code = 20
    summary = "a patch does not apply (names patch, component, release, ref, SHA, files and hunks)"


class UnsafePatchError(PipelineError):
    exit_code = 21
    summary = "a patch is refused: it writes outside the tree, into .git or through a symlink"


class PatchFormatError(PipelineError):
    exit_code = 22
    summary = "a patch file contains no diff git can read"


class PatchEncodingError(PatchFormatError):
    exit_code = 23
    summary = "a patch file has Windows (CRLF) line endings where the tree has none, or the reverse"


class BinaryPatchError(PatchFormatError):
    exit_code = 24
    summary = "a patch changes a binary file without carrying its data (regenerate with --binary)"


class TypeChangePatchError(PatchFormatError):
    exit_code = 26
    summary = "a patch turns a file into a symbolic link (or back) in place, which git cannot apply"


class SeriesLayoutError(ConfigError):
    exit_code = 25
    summary = "a series' file names do not give one order (number prefixes of different widths, repeated numbers)"


class TestsFailedError(PipelineError):
    __test__ = False  # not a pytest test class
    exit_code = 30
    summary = "upstream unit tests failed on a patched tree (testapply)"


class TestEnvironmentError(PipelineError):
    __test__ = False
    exit_code = 31
    summary = "the unit-test environment could not be installed or the test runner did not run (testapply)"


class DockerUnavailableError(PipelineError):
    exit_code = 40
    summary = "no Docker engine reachable (DOCKER_HOST or the local socket)"


class BaseImageError(PipelineError):
    exit_code = 41
    summary = "a base image can neither be pulled nor bootstrapped"


class ImageBuildError(PipelineError):
    exit_code = 42
    summary = "a Dockerfile step failed (names the service, the step and the log)"


class ImageContentError(PipelineError):
    exit_code = 45
    summary = ("an image lacks what its own files need (a shared library that no installed package provides: "
               "names the file, the library and where to add the package)")


class PackageNotFoundError(ImageBuildError):
    exit_code = 46
    summary = "a Debian package an image needs is not in the release's Debian suite (names the package and the file asking for it)"


class PushError(PipelineError):
    exit_code = 43
    summary = "a push to the registry failed"


class LayerCacheError(PipelineError):
    exit_code = 44
    summary = "the shared layer cache (cache_registry, --cache-from) is unreachable or refused a pull or push"


class ImageRecordError(PipelineError):
    exit_code = 48
    summary = "an image has no build record, or one of another schema (names the file and the build to run)"


class HotpatchError(PipelineError):
    exit_code = 47
    summary = ("hotpatch refused or failed: no such running container, or its image is not of that service, "
               "release and upstream version")


class SbomError(PipelineError):
    exit_code = 50
    summary = "an SBOM or VEX document cannot be made (no build record, invalid document)"


class SmokeStartError(PipelineError):
    exit_code = 70
    summary = "invoke smoke: a service or a part of the control plane did not start (names it, with the end of its log)"


class SmokeCheckError(PipelineError):
    exit_code = 71
    summary = "invoke smoke: a check failed (names the service, the check, the command and its output)"


class LifecycleConflictError(PipelineError):
    exit_code = 60
    summary = "a patch lifecycle command stopped on a conflict (names the files and the worktree to finish in)"
    rows: list[dict[str, object]]  # set by a refresh that stopped: a row per patch (tasks.py prints them)


class UncommittedChangesError(PipelineError):
    exit_code = 62
    summary = "refused: files the command would rewrite have uncommitted changes"


class Interrupted(PipelineError):
    exit_code = 130
    summary = "interrupted (Ctrl-C or SIGTERM); the state is as before the interrupted step"


# Exit codes that are results rather than failures (documented alongside the errors).
UPSTREAMED_EXIT = 61  # patches.upstreamed: some patches are already upstream and can be dropped
AUDIT_FINDINGS_EXIT = 63  # patches.audit --strict: findings exist
ADVISORIES_AFFECTED_EXIT = 64  # advisories --strict: an image is affected by an advisory nothing fixes


def exit_codes() -> list[tuple[int, str]]:
    """Every documented exit code with its meaning, in order."""
    codes: dict[int, str] = {0: "success"}
    stack: list[type[PipelineError]] = [PipelineError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls is not PipelineError:
            codes.setdefault(cls.exit_code, cls.summary)
    codes[UPSTREAMED_EXIT] = "patches.upstreamed: some patches are already upstream and can be dropped"
    codes[AUDIT_FINDINGS_EXIT] = "patches.audit --strict: the audit has findings"
    codes[ADVISORIES_AFFECTED_EXIT] = "advisories --strict: an image is affected by an advisory that no patch or override fixes"
    return sorted(codes.items())
