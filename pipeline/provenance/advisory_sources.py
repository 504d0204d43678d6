"""Where advisories come from: the ``ossa`` and ``pypa_advisories`` settings, a git URL (fetched into a
mirror like the sources, its YAML folder exported once per commit) or a local folder.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import console
from pipeline.core.errors import ConfigError, FetchError, GitError
from pipeline.core.files import (
    clean_staging,
    remove,
    replace_dir,
)
from pipeline.core.git import git, rev_parse, text
from pipeline.core.redact import public_url
from pipeline.core.releases import Component, Project
from pipeline.core.settings import is_local
from pipeline.sources.mirrors import Mirror

SOURCES = {"ossa": "ossa", "pypa_advisories": "vulns"}  # setting -> the folder of a repository that holds the YAML


BRANCH = "refs/heads/advisories"


@dataclass(frozen=True)
class Folder:
    setting: str
    path: Path  # the folder holding the YAML files
    label: str  # for messages and the report: the folder, or the URL and commit


# A source that could not be fetched is not asked again by the same process: a build's VEX step of every image
# would otherwise try (and wait for) it once per image.
_unreachable: dict[str, FetchError] = {}


def forget_unreachable() -> None:
    """Ask every source again (``advisory_database.forget``)."""
    _unreachable.clear()


def _git_folder(project: Project, setting: str, url: str, refresh: bool) -> Folder:
    """The repository's YAML folder at its default branch's head, from the mirror (fetched when asked or missing)."""
    name = SOURCES[setting]
    if url in _unreachable and not refresh:
        raise _unreachable[url]
    mirror = Mirror(project, Component(name=f"advisories-{name}", release="advisories", ref="HEAD", url=url,
                                       pypi_name="", is_service=False))
    shown = public_url(url)
    with mirror.lock():
        mirror.ensure()
        commit = rev_parse(mirror.path, BRANCH)
        if (refresh or commit is None) and not project.settings.offline:
            try:
                head = text("ls-remote", url, "HEAD").split()
                if not head:
                    raise GitError(("ls-remote", shown, "HEAD"), None, 0, "the repository has no HEAD")
                if rev_parse(mirror.path, head[0]) != head[0]:
                    mirror.fetch(f"+HEAD:{BRANCH}", depth=1)
                text("update-ref", BRANCH, head[0], cwd=mirror.path)
                commit = head[0]
            except GitError as exc:
                reason = (exc.stderr.strip().splitlines() or [f"exit {exc.returncode}"])[-1]
                if commit is None:
                    _unreachable[url] = FetchError(
                        f"pipeline.{setting}: cannot fetch {shown}: {reason}",
                        hint=f"point {setting} at a reachable mirror of the repository or at a local folder of its "
                             f"{name}/ YAML files (INVOKE_PIPELINE_{setting.upper()}=...)")
                    raise _unreachable[url] from None
                console.note(f"{setting}: {shown} unreachable ({reason}); using the mirror as of commit {commit[:12]}")
        if commit is None:
            raise FetchError(f"pipeline.{setting}: {shown} has not been fetched, and offline mode forbids fetching it",
                             hint="run invoke advisories once without --offline, or point it at a local folder")
        dest = project.layout.advisories_export(name, url) / commit
        if not dest.is_dir():
            _export(mirror.path, commit, name, dest)
    return Folder(setting, dest / name, f"{shown} at {commit[:12]}")


def _export(repo: Path, commit: str, folder: str, dest: Path) -> None:
    """The folder of ``commit`` as plain files, whole or not at all; earlier commits' exports are dropped."""
    archive = git("archive", "--format=tar", commit, f"{folder}/", cwd=repo, binary=True)
    assert isinstance(archive, bytes)

    def unpack(staging: Path) -> None:
        staging.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(staging, filter="data")

    clean_staging(dest.parent)
    replace_dir(dest, unpack)
    for older in dest.parent.iterdir():
        if older != dest and not older.name.startswith("."):
            remove(older)


def folders(project: Project, refresh: bool) -> list[Folder]:
    """Where each configured source's YAML files are (fetching a git source when ``refresh`` or never fetched)."""
    found = []
    for setting, name in SOURCES.items():
        value = getattr(project.settings, setting)
        if not value:
            continue
        if not is_local(value):
            found.append(_git_folder(project, setting, value, refresh))
            continue
        path = Path(value)
        if (path / name).is_dir():  # a checkout of the repository
            path = path / name
        if not path.is_dir():
            raise ConfigError(f"pipeline.{setting}: {path} is not a folder",
                              hint=f"give a git URL or a folder of {'OSSA-*.yaml' if name == 'ossa' else '<package>/*.yaml'} files")
        found.append(Folder(setting, path, str(path)))
    return found
