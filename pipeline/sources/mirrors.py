"""Git mirrors of upstream repositories under cache_dir/git: fetched, healed, resolved, checked out.

Owns one mirror per component and URL (``Mirror``: made or updated under
its lock, whole history and tags fetched once, a corrupt one removed and
fetched again), resolving a ref in it to a commit, and a pristine tree at a
commit (``git archive``, no ``.git`` of the mirror's).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

from pipeline.core import console, locks
from pipeline.core.errors import CacheCorruptError, FetchError, GitError
from pipeline.core.files import (
    clean_staging,
    remove,
    replace_dir,
)
from pipeline.core.git import is_corruption, rev_parse, text
from pipeline.core.redact import public_url
from pipeline.core.releases import Component, Project
from pipeline.sources import versions
from pipeline.sources.refs import RefKind, classify_ref

COMPLETE_MARK = "openstack-patches-history"  # file in a mirror whose history and tags were fetched whole

T = TypeVar("T")


class Mirror:
    """A bare mirror of one upstream repository; use under its lock (``Mirror.locked``)."""

    def __init__(self, project: Project, component: Component) -> None:
        self.project = project
        self.component = component
        self.url = component.url
        self.path = project.layout.mirror(component.name, component.url)
        self.offline = project.settings.offline

    def lock(self) -> AbstractContextManager[None]:
        return locks.hold(self.path.with_name(self.path.name + ".lock"), f"the git mirror of {self.component.name}")

    def ensure(self) -> None:
        clean_staging(self.path.parent, self.path.name)
        if (self.path / "HEAD").exists():
            try:  # git must still see a repository there: a damaged HEAD or config, or objects/ gone, and it does not
                text(f"--git-dir={self.path}", "rev-parse", "--is-bare-repository")
            except GitError as exc:
                self.discard(exc)
        if not (self.path / "HEAD").exists():
            remove(self.path)  # a torn directory without HEAD is no mirror
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_dir(self.path, lambda tmp: text("init", "--quiet", "--bare", str(tmp)))
        locks.clean_git_locks(self.path)

    def discard(self, exc: GitError) -> None:
        """Remove the mirror git reports as corrupt (it is fetched again); offline, that is the error."""
        why = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else f"git exit {exc.returncode}"
        if self.offline:
            raise CacheCorruptError(f"the git mirror {self.path} of {self.component.name} is corrupt ({why}), "
                                    "and offline mode forbids fetching it again",
                                    hint="run once without --offline: the mirror is then removed and fetched again")
        console.note(f"the git mirror {self.path} is corrupt ({why}); removing it and fetching again")
        remove(self.path)

    def fetch(self, *refspecs: str, depth: int | None = 1, whole: bool = False) -> None:
        args = ["fetch", "--quiet", "--no-tags", "--force"]
        if depth:
            args.append(f"--depth={depth}")
        elif self.shallow():
            args.append("--unshallow")
        text(*args, self.url, *refspecs, cwd=self.path)
        if whole:
            (self.path / COMPLETE_MARK).write_text("history and tags fetched whole\n")

    def shallow(self) -> bool:
        return (self.path / "shallow").exists()

    def complete(self) -> bool:
        return (self.path / COMPLETE_MARK).exists() and not self.shallow()

    def fetch_history(self, branch: str | None = None) -> None:
        """The whole history of ``branch`` (or every branch) and every tag: what pbr's versions need."""
        heads = f"+refs/heads/{branch}:refs/heads/{branch}" if branch else "+refs/heads/*:refs/heads/*"
        self.fetch(heads, "+refs/tags/*:refs/tags/*", depth=None, whole=branch is None)

    def pin(self, sha: str) -> None:
        # Advertised refs are what a local clone may fetch by SHA: pin every commit a tree uses.
        text("update-ref", f"refs/pinned/{sha}", sha, cwd=self.path)

    def remote_refs(self, name: str) -> dict[str, str]:
        try:
            out = text("ls-remote", self.url, f"refs/heads/{name}", f"refs/tags/{name}", f"refs/tags/{name}^{{}}")
        except GitError as exc:
            raise FetchError(
                f"{self.component.label}: cannot query {public_url(self.url)}: {exc.stderr.strip()}",
                hint="check the URL (git_base, repos) and network access, or use --offline to build from the mirror",
            ) from None
        refs = {}
        for line in out.splitlines():
            sha, _, refname = line.partition("\t")
            refs[refname] = sha
        return refs


def _resolve_git(mirror: Mirror) -> tuple[str, RefKind, str]:
    """Make the mirror hold the commit the ref names; return (full SHA, kind, version)."""
    component = mirror.component
    ref = component.ref
    kind = classify_ref(ref)

    def fail(detail: str, hint: str | None = None) -> FetchError:
        return FetchError(f"{component.label}: ref {ref!r} {detail} at {component.public_url}",
                          hint=hint or f"check releases/{component.release}/source-refs.yaml")

    def offline_missing() -> FetchError:
        return fail("is not in the local mirror, and offline mode forbids fetching",
                    hint="run once without --offline to fill the mirror")

    def fetch_or_fail(*refspecs: str, depth: int | None = 1, history_of: str | None = "") -> None:
        try:
            if history_of != "":
                mirror.fetch_history(history_of)
            else:
                mirror.fetch(*refspecs, depth=depth)
        except GitError as exc:
            if is_corruption(exc):
                raise
            raise fail(f"could not be fetched: {exc.stderr.strip()}",
                       hint="check the URL and network access (or the ref in source-refs.yaml)") from None

    def with_history(sha: str) -> str:
        if not mirror.complete():
            if mirror.offline:
                raise fail("needs the upstream history for its version, which the mirror lacks, and offline mode "
                           "forbids fetching", hint="run once without --offline")
            fetch_or_fail(history_of=None)
        return versions.pbr_version(mirror.path, sha)

    if kind is RefKind.SHA:
        sha = rev_parse(mirror.path, ref)
        if sha is None or (len(ref) < 40 and mirror.shallow() and not mirror.offline):
            # A short SHA is only unambiguous, and an old commit only present, in the whole history.
            if mirror.offline and sha is None:
                raise offline_missing()
            if not mirror.offline:
                fetch_or_fail(history_of=None)
            sha = rev_parse(mirror.path, ref)
        if sha is None:
            raise fail("names no commit")
        mirror.pin(sha)
        return sha, kind, with_history(sha)

    if kind in (RefKind.TAG, RefKind.NAME):
        sha = rev_parse(mirror.path, f"refs/tags/{ref}")
        if sha is None and not mirror.offline and kind is RefKind.TAG:
            fetch_or_fail(f"+refs/tags/{ref}:refs/tags/{ref}")
            sha = rev_parse(mirror.path, f"refs/tags/{ref}")
        if sha is not None:
            mirror.pin(sha)
            version = versions.tag_version(ref)
            if version is None or not versions.is_version_tag(ref):
                version = with_history(sha)  # 2025.1-eom: pbr walks back to the last release tag
            return sha, RefKind.TAG, version
        if kind is RefKind.TAG and mirror.offline:
            raise offline_missing()

    if mirror.offline:
        sha = rev_parse(mirror.path, f"refs/heads/{ref}")
        if sha is None:
            raise offline_missing()
        return sha, RefKind.BRANCH, versions.pbr_version(mirror.path, sha)

    remote = mirror.remote_refs(ref)
    if f"refs/tags/{ref}" in remote:
        fetch_or_fail(f"+refs/tags/{ref}:refs/tags/{ref}")
        sha = rev_parse(mirror.path, f"refs/tags/{ref}")
        assert sha
        mirror.pin(sha)
        version = versions.tag_version(ref) if versions.is_version_tag(ref) else None
        return sha, RefKind.TAG, version or with_history(sha)
    if f"refs/heads/{ref}" in remote:
        sha = remote[f"refs/heads/{ref}"]
        if rev_parse(mirror.path, sha) != sha or mirror.shallow():
            fetch_or_fail(history_of=ref)
        text("update-ref", f"refs/heads/{ref}", sha, cwd=mirror.path)
        mirror.pin(sha)
        return sha, RefKind.BRANCH, versions.pbr_version(mirror.path, sha)
    raise fail("is neither a branch nor a tag (for a commit, give its SHA)")


def _tree_from_mirror(mirror: Path, sha: str, tag: str | None, dest: Path) -> None:
    text("init", "--quiet", str(dest))
    refspecs = [sha]
    if tag:
        refspecs.append(f"+refs/tags/{tag}:refs/tags/{tag}")  # pbr reads the tag from the tree
    text("fetch", "--quiet", "--no-tags", "--depth=1", mirror.as_uri(), *refspecs, cwd=dest)
    text("checkout", "--quiet", "--detach", sha, cwd=dest)


def _with_mirror(mirror: Mirror, action: Callable[[], T]) -> T:
    """Run ``action`` on the mirror; a corrupt mirror is removed and fetched again once."""
    with mirror.lock():
        mirror.ensure()
        try:
            return action()
        except GitError as exc:
            if not is_corruption(exc):
                raise
            mirror.discard(exc)
            mirror.ensure()
            return action()
