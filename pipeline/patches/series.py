"""Patch stage: discover each series, apply it, and keep the prepared trees.

Owns ``patches/<component>/<release>/*.patch`` as series (their order, and
refusing names that do not give one), applying a series to a commit in a
git index rather than a work tree (fast, and exact: what is checked is what
is built), the prepared trees at ``<workdir>/patched/<release>/<component>/``
(branch ``patched``, one commit per patch with its own author, date and
message), their record (``PreparedTree``: every applied patch with the hash
of its exact bytes and its provenance), and ``patches.check``.

Callers hold the release lock while preparing trees.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.core import console, locks
from pipeline.core.errors import (
    ConfigError,
    GitError,
    PatchApplyError,
    PatchEncodingError,
    PipelineError,
    SeriesLayoutError,
    UnsafePatchError,
)
from pipeline.core.files import clean_staging, replace_dir, sha256_file
from pipeline.core.git import clean_at, git, text
from pipeline.core.releases import Component, Project
from pipeline.core.stamps import Stamp
from pipeline.patches.patchfile import (
    DEFAULT_AUTHOR,
    PatchMeta,
    parse_patch,
    provenance,
    symlinks_after,
    trailers,
    unsafe_paths,
)
from pipeline.sources.fetch import SourceRecord, fetch, fetch_component

PATCH_SUFFIX = ".patch"
NUMBER_RE = re.compile(r"^(\d+)[-_.]")
FAILED_AT_RE = re.compile(r"^error: patch failed: (.+):(\d+)$")
NOT_APPLY_RE = re.compile(r"^error: (.+): patch does not apply$")
MISSING_RE = re.compile(r"^error: (.+): does not exist in index$")
EXISTS_RE = re.compile(r"^error: (.+): already exists in index$")


# --- discovery -------------------------------------------------------------------


def discover(directory: Path) -> tuple[list[Path], list[Path]]:
    """(patches in application order, other files that are reported but not applied).

    Application order is name order, so number prefixes must have one width
    (``9-y.patch`` sorts after ``10-x.patch``) and no number may repeat.
    """
    if not directory.is_dir():
        return [], []
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    patches = [p for p in files if p.suffix == PATCH_SUFFIX]
    others = [p for p in files if p.suffix != PATCH_SUFFIX]
    numbered = {p: m.group(1) for p in patches if (m := NUMBER_RE.match(p.name))}
    widths = {len(n) for n in numbered.values()}
    if len(widths) > 1:
        width = max(widths)
        short = [p.name for p, n in numbered.items() if len(n) < width]
        raise SeriesLayoutError(
            f"{directory}: the patches' number prefixes have different widths ({', '.join(sorted(short))} "
            f"against {width} digits), so name order is not the intended order",
            hint=f"zero-pad the numbers to {width} digits (e.g. {short[0]} -> "
                 f"{numbered_name(int(NUMBER_RE.match(short[0]).group(1)), short[0], width)}), or run invoke patches.renumber",
        )
    seen: dict[int, str] = {}
    for path, number in numbered.items():
        if int(number) in seen:
            raise SeriesLayoutError(f"{directory}: {seen[int(number)]} and {path.name} carry the same number {number}",
                                    hint="give each patch its own number, or run invoke patches.renumber")
        seen[int(number)] = path.name
    return patches, others


def numbered_name(number: int, name: str, width: int = 4) -> str:
    """``name`` with its number prefix replaced by ``number`` at ``width`` digits."""
    rest = NUMBER_RE.sub("", name, count=1) if NUMBER_RE.match(name) else name
    return f"{number:0{width}d}-{rest}"


def all_series(project: Project, releases: list[str] | None = None) -> list[tuple[str, str]]:
    """Every (release, component) that has a patch directory, validated against source-refs."""
    found = []
    wanted = list(releases) if releases else list(project.releases)
    for release in wanted:
        project.release(release)
    patches_dir = project.settings.root / "patches"
    if not patches_dir.is_dir():
        return []
    # Dot-directories are staging directories of a series being rewritten (patches.refresh, ...).
    for comp_dir in sorted(p for p in patches_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for rel_dir in sorted(p for p in comp_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            release = rel_dir.name
            if release not in project.releases:
                raise ConfigError(f"{rel_dir}: patches for unknown release {release!r}",
                                  hint=f"known releases: {', '.join(project.releases)}")
            if release not in wanted:
                continue
            if comp_dir.name not in project.release(release).refs:
                raise ConfigError(
                    f"{rel_dir}: patches for {comp_dir.name}, which has no ref in releases/{release}/source-refs.yaml",
                    hint=f"add `{comp_dir.name}: <ref>` there, or move the patches",
                )
            found.append((release, comp_dir.name))
    return found


def read_patch(project: Project, path: Path) -> PatchMeta:
    return parse_patch(path.read_bytes(), project.layout.repo_rel(path))


# --- records ---------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedPatch:
    """One applied patch as every later stage needs it (no stage re-reads the file)."""

    component: str
    file: str  # path in the repository
    sha256: str  # of the file's exact bytes
    subject: str
    author: str
    date: str | None
    message: str
    source_format: str
    patch_type: str
    change_id: str | None
    cherry_picked_from: tuple[str, ...]
    bugs: tuple[tuple[str, str], ...]
    cves: tuple[str, ...]
    files: tuple[str, ...]  # paths the patch changes
    text: str  # the patch, decoded for display (the hash is of the bytes)
    commit: str | None = None  # in the prepared tree

    @classmethod
    def make(cls, component: str, file: str, meta: PatchMeta, commit: str | None) -> AppliedPatch:
        origin = provenance(meta)
        return cls(component=component, file=file, sha256=meta.sha256, subject=meta.subject, author=meta.author,
                   date=meta.date, message=meta.message, source_format=meta.source_format,
                   patch_type=origin.patch_type, change_id=origin.change_id,
                   cherry_picked_from=origin.cherry_picked_from, bugs=origin.bugs, cves=origin.cves,
                   files=tuple(dict.fromkeys(c.path for c in meta.changes)), text=meta.text, commit=commit)

    @classmethod
    def from_dict(cls, data: dict) -> AppliedPatch:
        data = dict(data)
        for key in ("cherry_picked_from", "cves", "files"):
            data[key] = tuple(data.get(key, ()))
        data["bugs"] = tuple(tuple(b) for b in data.get("bugs", ()))
        return cls(**data)


@dataclass(frozen=True)
class PreparedTree:
    component: str
    release: str
    tree: str  # relative to the work directory
    base_commit: str
    head: str
    head_date: int  # committer date of head (seconds): the SBOM's reproducible timestamp
    source: SourceRecord
    patches: tuple[AppliedPatch, ...] = ()
    ignored: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_dict(cls, data: dict) -> PreparedTree:
        data = dict(data)
        data["source"] = SourceRecord.from_dict(data["source"])
        data["patches"] = tuple(AppliedPatch.from_dict(p) for p in data["patches"])
        data["ignored"] = tuple(data["ignored"])
        return cls(**data)


# --- applying ----------------------------------------------------------------------


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


# --- the stage ---------------------------------------------------------------------


def _series_inputs(project: Project, component: Component, source: SourceRecord) -> tuple[list[Path], list[Path], dict]:
    patches, others = discover(project.layout.series_dir(component.name, component.release))
    inputs = {"base": source.commit, "source": asdict(source),
              "patches": [(project.layout.repo_rel(p), sha256_file(p)) for p in patches]}
    return patches, others, inputs


def prepare(project: Project, component: Component, source: SourceRecord) -> tuple[PreparedTree, str]:
    """Bring the prepared tree of one component up to date; return its record and what was done."""
    layout = project.layout
    patches, others, inputs = _series_inputs(project, component, source)
    dest = layout.prepared_tree(component.release, component.name)
    stamp = Stamp(layout.stamp("patch", component.release, component.name))
    previous = stamp.current(inputs)
    if previous and clean_at(dest, previous["head"]):
        return PreparedTree.from_dict(previous), "up to date"
    stamp.clear()
    applied: list[AppliedPatch] = []

    def check_out(tree: Path) -> None:
        applied[:] = apply_series(project, component, source, patches, tree, source.commit, commit=True)
        head = applied[-1].commit if applied else source.commit
        text("checkout", "--quiet", "-f", "-B", "patched", head, cwd=tree)
        text("clean", "--quiet", "-f", "-d", "-x", cwd=tree)

    def build(staging: Path) -> None:
        clone_pristine(project, source, staging)
        check_out(staging)

    if not _update_in_place(dest, source.commit, check_out):
        replace_dir(dest, build)  # a failure leaves the previous prepared tree untouched
    prepared = PreparedTree(
        component=component.name, release=component.release, tree=layout.rel(dest), base_commit=source.commit,
        head=text("rev-parse", "HEAD", cwd=dest).strip(),
        head_date=int(text("log", "-1", "--format=%ct", "HEAD", cwd=dest).strip()), source=source, patches=tuple(applied),
        ignored=tuple(layout.repo_rel(p) for p in others),
    )
    stamp.record(inputs, asdict(prepared))
    return prepared, f"{len(applied)} patch(es) applied"


def _update_in_place(tree: Path, base: str, check_out: Callable[[Path], None]) -> bool:
    """Move an earlier prepared tree of the same base to the new series; False where it must be made anew.

    The series is applied in a private index, so a patch that fails leaves
    the tree as it was; only then does git check out the new head, writing
    the files that differ, not all of them (nova has 10,000).  Anything git
    cannot do here (no such tree, another base, the lock file of a checkout
    that was killed) falls back to a fresh clone; the stamp, cleared before,
    makes a tree that was left half-way be redone by the next run.
    """
    if not (tree / ".git").is_dir():
        return False
    try:
        git("cat-file", "-e", f"{base}^{{commit}}", cwd=tree)
        check_out(tree)
    except GitError:
        return False
    return True


def patch(project: Project, release: str, names: list[str] | tuple[str, ...] = (), jobs: int = 1) -> list[PreparedTree]:
    """Fetch and patch the named components of a release (all by default); the caller holds the release lock."""
    records = fetch(project, release, names, jobs)
    clean_staging(project.layout.workdir / "patched" / release)

    def one(component: Component) -> PreparedTree:
        with console.step(f"patch {component.name} ({release})") as outcome:
            prepared, outcome["status"] = prepare(project, component, records[component.name])
        for name in prepared.ignored:
            console.warn(f"{name}: not a .patch file, not applied")
        return prepared

    components = project.components(release, names)
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(components) or 1))) as pool:
        return list(pool.map(one, components))


# --- listing and checking ----------------------------------------------------------


def list_patches(project: Project, releases: list[str] | None = None) -> list[dict]:
    rows = []
    for release, component in all_series(project, releases):
        patches, others = discover(project.layout.series_dir(component, release))
        for p in patches:
            meta = read_patch(project, p)
            origin = provenance(meta)
            rows.append({"release": release, "component": component, "patch": project.layout.repo_rel(p),
                         "subject": meta.subject, "author": meta.author, "type": origin.patch_type,
                         "change_id": origin.change_id, "cves": list(origin.cves)})
        for p in others:
            rows.append({"release": release, "component": component, "patch": project.layout.repo_rel(p),
                         "subject": "(ignored: not a .patch file)", "author": "", "type": "", "change_id": None,
                         "cves": []})
    return rows


@dataclass(frozen=True)
class CheckResult:
    release: str
    component: str
    patches: int
    ok: bool
    detail: str
    exit_code: int = 0


def check(project: Project, releases: list[str] | None = None) -> list[CheckResult]:
    """Apply every series to its ref in a private index; nothing is written to any tree."""
    results = []
    for release, name in all_series(project, releases):
        component = project.component(release, name)
        try:
            patches, _ = discover(project.layout.series_dir(name, release))
            with locks.hold(project.layout.lock(release), f"the work directory of {release}"):
                source, _ = fetch_component(project, component)
            repo = project.layout.resolve(source.tree)
            apply_series(project, component, source, patches, repo, source.commit, commit=False, scratch_objects=True)
            results.append(CheckResult(release, name, len(patches), True, "applies"))
        except PipelineError as error:
            results.append(CheckResult(release, name, len(list(project.layout.series_dir(name, release).glob("*.patch"))),
                                       False, str(error), error.exit_code))
    return results
