"""Applying a series: each patch in a private git index, one commit each, and the message a failure gives.

Owns ``IndexApplier`` (a series applied to a commit in a scratch index, no
work tree: refused paths, binary and type changes, failing hunks named with
the component, release, ref and SHA), the commits it makes (the patch's
author, date and message plus a ``Patch-File:`` trailer) and cloning a
pristine tree.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from pipeline.core.errors import (
    GitError,
    PatchApplyError,
    PatchEncodingError,
    PipelineError,
    UnsafePatchError,
)
from pipeline.core.git import git, text
from pipeline.core.releases import Component, Project
from pipeline.patches.patchfile import DEFAULT_AUTHOR, PatchMeta, read_patch
from pipeline.patches.provenance import (
    symlinks_after,
    trailers,
    unsafe_paths,
)
from pipeline.patches.records import AppliedPatch
from pipeline.sources.fetch import SourceRecord

FAILED_AT_RE = re.compile(r"^error: patch failed: (.+):(\d+)$")


NOT_APPLY_RE = re.compile(r"^error: (.+): patch does not apply$")


MISSING_RE = re.compile(r"^error: (.+): does not exist in index$")


EXISTS_RE = re.compile(r"^error: (.+): already exists in index$")


def source_context(component: Component, source: SourceRecord) -> str:
    sdist = f", sdist {source.origin}" if source.method == "sdist" else ""
    return (f"{component.name} (release {component.release}, ref {component.ref} = "
            f"{source.upstream_revision or source.commit}{sdist})")


class IndexApplier:
    """Applies patches one by one to a commit's tree in a private git index (no work tree needed).

    With ``scratch_objects`` the blobs and trees it writes go to a throw-away
    object directory, so checking a series leaves the repository untouched.
    """

    def __init__(self, repo: Path, base: str, context: str, scratch: Path, scratch_objects: bool = False) -> None:
        self.repo, self.context, self.parent = repo, context, base
        self.env = {"GIT_INDEX_FILE": str(scratch / "index")}
        if scratch_objects:
            objects = scratch / "objects"
            objects.mkdir(parents=True, exist_ok=True)
            common = Path(text("rev-parse", "--git-common-dir", cwd=repo).strip())
            common = common if common.is_absolute() else repo / common
            self.env.update(GIT_OBJECT_DIRECTORY=str(objects), GIT_ALTERNATE_OBJECT_DIRECTORIES=str(common / "objects"))
        text("read-tree", base, cwd=repo, env=self.env)
        listing = text("ls-tree", "-r", "--full-tree", base, cwd=repo)
        self.symlinks = {line.split("\t", 1)[1] for line in listing.splitlines() if line.startswith("120000 ")}
        self.base_date = text("log", "-1", "--format=%aD", base, cwd=repo).strip()

    def apply(self, patch: Path, meta: PatchMeta, label: str, commit: bool) -> str | None:
        problems = unsafe_paths(meta, self.symlinks)
        if problems:
            raise UnsafePatchError(f"{label} ({self.context}) is refused:\n    " + "\n    ".join(problems),
                                   hint=f"a patch may only change files inside the source tree; fix {label}")
        try:
            text("apply", "--cached", "--whitespace=nowarn", str(patch), cwd=self.repo, env=self.env)
        except GitError as failure:
            raise self._diagnose(patch, meta, label, failure) from None
        self.symlinks = symlinks_after(meta, self.symlinks)
        if not commit:
            return None
        tree = text("write-tree", cwd=self.repo, env=self.env).strip()
        date = meta.date or self.base_date
        identity = {
            "GIT_AUTHOR_NAME": meta.author_name, "GIT_AUTHOR_EMAIL": meta.author_email, "GIT_AUTHOR_DATE": date,
            # A fixed committer and date make the prepared tree's SHAs reproducible.
            "GIT_COMMITTER_NAME": DEFAULT_AUTHOR[0], "GIT_COMMITTER_EMAIL": DEFAULT_AUTHOR[1], "GIT_COMMITTER_DATE": date,
        }
        sha = text("commit-tree", tree, "-p", self.parent, "-F", "-", cwd=self.repo, env=identity,
                   input=with_trailer(meta.message, "Patch-File", label)).strip()
        self.parent = sha
        return sha

    def _diagnose(self, patch: Path, meta: PatchMeta, label: str, failure: GitError) -> PipelineError:
        try:
            text("apply", "--cached", "--check", "--reverse", str(patch), cwd=self.repo, env=self.env)
            return PatchApplyError(f"{label} does not apply to {self.context}: the change is already there",
                                   hint=f"upstream contains it (the patch applies in reverse): remove {label} "
                                        "(invoke patches.upstreamed shows which commit has it)")
        except GitError:
            pass
        details: list[str] = []
        for line in failure.stderr.splitlines():
            line = line.strip()
            if m := FAILED_AT_RE.match(line):
                path, at = m.group(1), int(m.group(2))
                crlf = self._crlf_mismatch(path, meta)
                if crlf:
                    return PatchEncodingError(f"{label} does not apply to {self.context}: {crlf}",
                                              hint=f"regenerate {label} from a checkout of the ref with core.autocrlf=false")
                hunk = next((h for h in meta.hunks if h.path == path and h.old_start == at), None)
                details.append(f"{path}: hunk #{hunk.index} {hunk.header.strip()} does not apply" if hunk
                               else f"{path}: a hunk does not apply at line {at}")
            elif m := MISSING_RE.match(line):
                details.append(f"{m.group(1)}: the patch changes this file, but it does not exist at this ref "
                               "(renamed or removed upstream?)")
            elif m := EXISTS_RE.match(line):
                details.append(f"{m.group(1)}: the patch creates this file, but it already exists at this ref")
            elif line.startswith("error: ") and not NOT_APPLY_RE.match(line) and "while searching for" not in line:
                details.append(line[len("error: "):])
        return PatchApplyError(
            f"{label} does not apply to {self.context}:\n    " + "\n    ".join(details or [failure.stderr.strip() or "git apply failed"]),
            hint="upstream changed these lines; refresh the patch onto this ref (invoke patches.refresh, or git am -3 in a clone), or drop it",
        )

    def _crlf_mismatch(self, path: str, meta: PatchMeta) -> str | None:
        try:
            blob = git("cat-file", "blob", f":{path}", cwd=self.repo, env=self.env, binary=True)
        except GitError:
            return None
        assert isinstance(blob, bytes)
        section = meta.text.split(f"+++ b/{path}", 1)[-1]
        patch_crlf = "\r\n" in section.split("\ndiff --git ", 1)[0]
        tree_crlf = b"\r\n" in blob
        if tree_crlf and not patch_crlf:
            return f"{path} has Windows (CRLF) line endings at this ref, the patch's lines for it have none"
        if patch_crlf and not tree_crlf:
            return f"the patch's lines for {path} end in CRLF, the file at this ref has Unix line endings"
        return None


def with_trailer(message: str, key: str, value: str) -> str:
    """``message`` with ``key: value`` added to its trailer block (a new block if it has none)."""
    body = message.rstrip("\n")
    separator = "\n" if trailers(body) else "\n\n"
    return f"{body}{separator}{key}: {value}\n"


def apply_series(project: Project, component: Component, source: SourceRecord, patches: list[Path], repo: Path,
                 base: str, commit: bool, scratch_objects: bool = False,
                 on_applied: Callable[[AppliedPatch], None] | None = None) -> list[AppliedPatch]:
    """Apply ``patches`` in order onto ``base`` in ``repo``; one commit each when ``commit``."""
    applied = []
    with tempfile.TemporaryDirectory(prefix="series-") as scratch:
        applier = IndexApplier(repo, base, source_context(component, source), Path(scratch), scratch_objects)
        for patch in patches:
            label = project.layout.repo_rel(patch)
            meta = read_patch(project, patch)
            sha = applier.apply(patch, meta, label, commit)
            entry = AppliedPatch.make(component.name, label, meta, sha)
            applied.append(entry)
            if on_applied:
                on_applied(entry)
    return applied


def clone_pristine(project: Project, source: SourceRecord, dest: Path) -> None:
    """A local clone of the pristine tree's repository, without a work tree yet."""
    text("clone", "--quiet", "--no-checkout", str(project.layout.resolve(source.tree)), str(dest))


def series_head(applied: list[AppliedPatch], base: str) -> str:
    """The commit of the last patch of a series applied with ``commit=True``; ``base`` when it has none."""
    return applied[-1].committed if applied else base
