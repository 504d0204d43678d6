"""Patch stage: discover, parse, vet and apply each patch series.

Owns ``patches/<component>/<release>/*.patch``: their order, their metadata
(format-patch mail headers, ``git show`` headers or none), the safety checks
that keep a patch inside its tree, and the prepared trees at
``<workdir>/patched/<release>/<component>/`` with one commit per patch.
"""

from __future__ import annotations

import email
import email.header
import email.utils
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from . import console
from .config import Component, Project
from .errors import ConfigError, PatchApplyError, PatchFormatError, PipelineError, UnsafePatchError
from .git import GitError, clean_at, git
from .sources import SourceRecord, fetch, fetch_component
from .stamps import Stamp, hash_inputs, replace_dir, sha256_bytes

PATCH_SUFFIX = ".patch"
DEFAULT_AUTHOR = ("openstack-patches", "patches@openstack-patches.invalid")
SUBJECT_PREFIX_RE = re.compile(r"^\s*\[[^\]]*PATCH[^\]]*\]\s*", re.IGNORECASE)
HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
FAILED_AT_RE = re.compile(r"^error: patch failed: (.+):(\d+)$")


# --- discovery -------------------------------------------------------------------


def series_dir(project: Project, component: str, release: str) -> Path:
    return project.patches_dir / component / release


def discover(directory: Path) -> tuple[list[Path], list[Path]]:
    """(patches in name order, other files that are reported but not applied)."""
    if not directory.is_dir():
        return [], []
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    patches = [p for p in files if p.suffix == PATCH_SUFFIX]
    others = [p for p in files if p.suffix != PATCH_SUFFIX]
    return patches, others


def all_series(project: Project, releases: list[str] | None = None) -> list[tuple[str, str]]:
    """Every (release, component) that has a patch directory, validated against source-refs."""
    found = []
    wanted = releases or list(project.releases)
    for release in wanted:
        project.release(release)
    if not project.patches_dir.is_dir():
        return []
    for comp_dir in sorted(p for p in project.patches_dir.iterdir() if p.is_dir()):
        for rel_dir in sorted(p for p in comp_dir.iterdir() if p.is_dir()):
            release = rel_dir.name
            if release not in project.releases:
                raise ConfigError(
                    f"{rel_dir}: patches for unknown release {release!r}",
                    hint=f"known releases: {', '.join(project.releases)}",
                )
            if release not in wanted:
                continue
            if comp_dir.name not in project.release(release).refs:
                raise ConfigError(
                    f"{rel_dir}: patches for {comp_dir.name}, which has no ref in releases/{release}/source-refs.yaml",
                    hint=f"add `{comp_dir.name}: <ref>` there, or move the patches",
                )
            found.append((release, comp_dir.name))
    return found


# --- parsing ---------------------------------------------------------------------


@dataclass(frozen=True)
class FileChange:
    old_path: str | None  # None for a new file
    new_path: str | None  # None for a deleted file
    symlink_target: str | None = None  # set when the patch creates a symbolic link


@dataclass(frozen=True)
class Hunk:
    path: str
    index: int  # 1-based within its file
    old_start: int
    header: str


@dataclass(frozen=True)
class PatchMeta:
    subject: str
    body: str
    author_name: str
    author_email: str
    date: str | None
    changes: tuple[FileChange, ...] = ()
    hunks: tuple[Hunk, ...] = ()
    source_format: str = "plain"  # format-patch | git-show | plain

    @property
    def message(self) -> str:
        return f"{self.subject}\n\n{self.body}".rstrip() + "\n"


def _decode_header(value: str) -> str:
    unfolded = re.sub(r"\r?\n[ \t]+", " ", value)
    return str(email.header.make_header(email.header.decode_header(unfolded))).strip()


def _unquote_path(path: str) -> str:
    if path.startswith('"') and path.endswith('"'):
        # git C-quotes unusual names; decode the escapes it uses.
        return path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode("utf-8")
    return path


def _strip_prefix(path: str) -> str | None:
    path = _unquote_path(path.split("\t")[0].rstrip())
    if path == "/dev/null":
        return None
    if path.startswith(("a/", "b/")):
        return path[2:]
    return path


def _subject_from_filename(name: str) -> str:
    stem = re.sub(r"^\d+-", "", Path(name).stem)
    return stem.replace("-", " ").strip() or name


def parse_diff(diff: str) -> tuple[tuple[FileChange, ...], tuple[Hunk, ...]]:
    """Files and hunks of a unified (git) diff, without touching any tree."""
    changes: list[FileChange] = []
    hunks: list[Hunk] = []
    old = new = None
    symlink = False
    in_file = False
    hunk_count = 0
    lines = diff.splitlines()
    i = 0

    def flush() -> None:
        nonlocal old, new, symlink, in_file
        if in_file and (old or new):
            changes.append(FileChange(old, new))
        old = new = None
        symlink = False
        in_file = False

    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            flush()
            in_file = True
            hunk_count = 0
            m = re.match(r'^diff --git ("?a/.*?"?) ("?b/.*"?)$', line)
            if m:
                old, new = _strip_prefix(m.group(1)), _strip_prefix(m.group(2))
        elif line.startswith("new file mode 120000"):
            symlink = True
            old = None
        elif line.startswith("new file mode"):
            old = None
        elif line.startswith("deleted file mode"):
            new = None
        elif line.startswith(("rename from ", "copy from ")):
            old = _unquote_path(line.split(" ", 2)[2])
        elif line.startswith(("rename to ", "copy to ")):
            new = _unquote_path(line.split(" ", 2)[2])
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if not in_file:
                in_file = True
                hunk_count = 0
            old = _strip_prefix(line[4:])
            new = _strip_prefix(lines[i + 1][4:])
            i += 1
        elif (m := HUNK_RE.match(line)) and in_file:
            hunk_count += 1
            path = new or old or "?"
            hunks.append(Hunk(path, hunk_count, int(m.group(1)), line))
            if symlink and new:
                # The link target is the single added line of the hunk.
                target = next((l[1:] for l in lines[i + 1:] if l.startswith("+")), "")
                changes.append(FileChange(None, new, target))
                old = new = None
                in_file = False
                symlink = False
        i += 1
    flush()
    return tuple(changes), tuple(hunks)


def parse_patch(text: str, filename: str = "") -> PatchMeta:
    """Metadata and file list of a format-patch mail, ``git show`` output or plain diff."""
    diff_start = re.search(r"^(diff --git |--- |Index: )", text, re.MULTILINE)
    if not diff_start:
        raise PatchFormatError(f"{filename or 'patch'}: contains no diff", hint="create patches with git format-patch")
    head, diff = text[: diff_start.start()], text[diff_start.start():]
    changes, hunks = parse_diff(diff)
    if not changes:
        raise PatchFormatError(f"{filename or 'patch'}: no file changes found in the diff", hint="create patches with git format-patch")

    lines = head.splitlines()
    if lines and re.match(r"^From [0-9a-f]{40} ", lines[0]):
        lines = lines[1:]
    if lines and re.match(r"^(From|Subject|Date): ", lines[0]):
        header_end = next((i for i, l in enumerate(lines) if not l.strip()), len(lines))
        msg = email.message_from_string("\n".join(lines[:header_end]) + "\n\n")
        name, addr = email.utils.parseaddr(_decode_header(msg.get("From", "")))
        subject = SUBJECT_PREFIX_RE.sub("", _decode_header(msg.get("Subject", "")))
        body_lines = lines[header_end + 1:]
        if "---" in body_lines:  # the diffstat separator
            body_lines = body_lines[: body_lines.index("---")]
        return PatchMeta(
            subject=subject or _subject_from_filename(filename),
            body="\n".join(body_lines).strip(),
            author_name=name or DEFAULT_AUTHOR[0],
            author_email=addr or DEFAULT_AUTHOR[1],
            date=msg.get("Date"),
            changes=changes, hunks=hunks, source_format="format-patch",
        )
    if lines and re.match(r"^commit [0-9a-f]{7,40}", lines[0]):
        headers: dict[str, str] = {}
        idx = 1
        while idx < len(lines) and lines[idx].strip():
            key, _, value = lines[idx].partition(":")
            headers[key.strip()] = value.strip()
            idx += 1
        message = [l[4:] if l.startswith("    ") else l for l in lines[idx + 1:]]
        while message and not message[-1].strip():
            message.pop()
        name, addr = email.utils.parseaddr(headers.get("Author", ""))
        subject = message[0].strip() if message else _subject_from_filename(filename)
        return PatchMeta(
            subject=subject,
            body="\n".join(message[1:]).strip(),
            author_name=name or DEFAULT_AUTHOR[0],
            author_email=addr or DEFAULT_AUTHOR[1],
            date=headers.get("Date") or headers.get("AuthorDate"),
            changes=changes, hunks=hunks, source_format="git-show",
        )
    return PatchMeta(
        subject=_subject_from_filename(filename),
        body="\n".join(lines).strip(),
        author_name=DEFAULT_AUTHOR[0],
        author_email=DEFAULT_AUTHOR[1],
        date=None,
        changes=changes, hunks=hunks, source_format="plain",
    )


# --- safety ----------------------------------------------------------------------


def unsafe_paths(meta: PatchMeta, tree: Path) -> list[str]:
    """Reasons this patch must not be applied to ``tree``; empty when it is safe."""
    problems: list[str] = []
    new_links = {c.new_path for c in meta.changes if c.symlink_target is not None}
    for change in meta.changes:
        for path in {p for p in (change.old_path, change.new_path) if p}:
            pure = PurePosixPath(path)
            if pure.is_absolute():
                problems.append(f"{path}: absolute path")
                continue
            if ".." in pure.parts:
                problems.append(f"{path}: escapes the source tree ('..')")
                continue
            if ".git" in pure.parts:
                problems.append(f"{path}: writes into the .git directory")
                continue
            for depth in range(1, len(pure.parts)):
                prefix = PurePosixPath(*pure.parts[:depth])
                if (tree / prefix).is_symlink() or str(prefix) in new_links:
                    problems.append(f"{path}: writes through the symbolic link {prefix}")
                    break
        if change.symlink_target is not None and change.new_path:
            target = PurePosixPath(change.symlink_target)
            resolved = PurePosixPath(change.new_path).parent / target
            depth = 0
            escapes = target.is_absolute()
            for part in resolved.parts:
                depth += -1 if part == ".." else (0 if part == "." else 1)
                escapes = escapes or depth < 0
            if escapes:
                problems.append(f"{change.new_path}: creates a symbolic link to {change.symlink_target}, outside the source tree")
    return problems


# --- applying --------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedPatch:
    file: str  # path relative to the project root
    sha256: str
    subject: str
    author: str
    commit: str


@dataclass(frozen=True)
class PreparedTree:
    component: str
    release: str
    tree: str
    base_commit: str
    head: str
    patches: tuple[AppliedPatch, ...] = ()
    ignored: tuple[str, ...] = field(default_factory=tuple)


def _describe_failure(meta: PatchMeta, stderr: str) -> list[str]:
    details = []
    for line in stderr.splitlines():
        m = FAILED_AT_RE.match(line.strip())
        if m:
            path, at = m.group(1), int(m.group(2))
            hunk = next((h for h in meta.hunks if h.path == path and h.old_start == at), None)
            if hunk:
                details.append(f"{path}: hunk #{hunk.index} {hunk.header.strip()} does not apply")
            else:
                details.append(f"{path}: a hunk does not apply at line {at}")
        elif line.startswith("error: ") and "patch does not apply" not in line and "while searching for" not in line:
            details.append(line[len("error: "):])
    return details or [stderr.strip() or "git apply failed"]


def apply_patch(tree: Path, patch: Path, label: str, meta: PatchMeta, context: str) -> str:
    """Apply one patch and commit it with its own authorship; return the commit SHA.

    ``label`` names the patch in messages and in the commit's ``Patch-File:`` trailer.
    """
    problems = unsafe_paths(meta, tree)
    if problems:
        raise UnsafePatchError(
            f"{label} ({context}) is refused:\n    " + "\n    ".join(problems),
            hint=f"a patch may only change files inside the source tree; fix {patch}",
        )
    try:
        git("apply", "--index", "--whitespace=nowarn", str(patch), cwd=tree)
    except GitError as failure:
        try:
            git("apply", "--check", "--reverse", str(patch), cwd=tree)
            already = True
        except GitError:
            already = False
        details = "\n    ".join(_describe_failure(meta, failure.stderr))
        hint = (
            "the change is already in this ref (the patch applies in reverse): remove the patch"
            if already
            else "upstream changed these lines; refresh the patch against this ref (git am -3 in a clone), or drop it"
        )
        raise PatchApplyError(f"{label} does not apply to {context}:\n    {details}", hint=hint) from None
    author_date = meta.date or git("log", "-1", "--format=%aD", cwd=tree).strip()
    env = {
        "GIT_AUTHOR_NAME": meta.author_name, "GIT_AUTHOR_EMAIL": meta.author_email,
        "GIT_AUTHOR_DATE": author_date,
        # A fixed committer and date make the prepared tree's SHAs reproducible.
        "GIT_COMMITTER_NAME": DEFAULT_AUTHOR[0], "GIT_COMMITTER_EMAIL": DEFAULT_AUTHOR[1],
        "GIT_COMMITTER_DATE": author_date,
    }
    message = meta.message + f"\nPatch-File: {label}\n"
    git("commit", "--quiet", "--no-verify", "--allow-empty", "-F", "-", cwd=tree, env=env, input=message)
    return git("rev-parse", "HEAD", cwd=tree).strip()


def prepared_tree_path(project: Project, release: str, component: str) -> Path:
    return project.settings.workdir / "patched" / release / component


def _series_inputs(project: Project, component: Component, source: SourceRecord) -> tuple[list[Path], list[Path], dict]:
    patches, others = discover(series_dir(project, component.name, component.release))
    inputs = {
        "base": source.commit,
        "patches": [(p.name, sha256_bytes(p.read_bytes())) for p in patches],
    }
    return patches, others, inputs


def apply_series(
    project: Project,
    component: Component,
    source: SourceRecord,
    patches: list[Path],
    dest: Path,
    on_applied: Callable[[AppliedPatch], None] | None = None,
) -> list[AppliedPatch]:
    """Clone the pristine tree to ``dest`` and apply ``patches`` there, one commit each."""
    git("clone", "--quiet", "--no-checkout", source.tree, str(dest))
    git("checkout", "--quiet", "-B", "patched", source.commit, cwd=dest)
    context = (
        f"{component.name} (release {component.release}, ref {component.ref} = "
        f"{source.upstream_revision or source.commit}{', sdist ' + source.origin if source.method == 'sdist' else ''})"
    )
    applied = []
    for patch in patches:
        text = patch.read_text(encoding="utf-8", errors="surrogateescape")
        meta = parse_patch(text, patch.name)
        rel = patch.relative_to(project.settings.root) if patch.is_relative_to(project.settings.root) else patch
        commit = apply_patch(dest, patch, str(rel), meta, context)
        entry = AppliedPatch(str(rel), sha256_bytes(text.encode("utf-8", "surrogateescape")), meta.subject,
                             f"{meta.author_name} <{meta.author_email}>", commit)
        applied.append(entry)
        if on_applied:
            on_applied(entry)
    return applied


def prepare(project: Project, component: Component, source: SourceRecord) -> tuple[PreparedTree, str]:
    """Bring the prepared tree of one component up to date; return it and what was done."""
    patches, others, inputs = _series_inputs(project, component, source)
    dest = prepared_tree_path(project, component.release, component.name)
    stamp = Stamp(project.settings.workdir / ".stamps" / "patch" / component.release / f"{component.name}.json")
    input_hash = hash_inputs(inputs)
    previous = stamp.current(input_hash)
    if previous and clean_at(dest, previous["head"]):
        return _prepared_from_dict(previous), "up to date"

    applied: list[AppliedPatch] = []
    stamp.clear()
    # A failure while applying leaves the previous prepared tree untouched.
    replace_dir(dest, lambda staging: applied.extend(apply_series(project, component, source, patches, staging)))
    head = git("rev-parse", "HEAD", cwd=dest).strip()
    prepared = PreparedTree(
        component=component.name, release=component.release, tree=str(dest), base_commit=source.commit,
        head=head, patches=tuple(applied), ignored=tuple(p.name for p in others),
    )
    stamp.record(input_hash, asdict(prepared))
    return prepared, f"{len(applied)} patch(es) applied"


def _prepared_from_dict(data: dict) -> PreparedTree:
    data = dict(data)
    data["patches"] = tuple(AppliedPatch(**p) for p in data["patches"])
    data["ignored"] = tuple(data["ignored"])
    return PreparedTree(**data)


def patch(project: Project, release: str, names: list[str] | tuple[str, ...] = (), offline: bool = False) -> list[PreparedTree]:
    """Fetch and patch the named components of a release (all by default)."""
    records = fetch(project, release, names, offline)
    results = []
    for component in project.components(release, names):
        with console.step(f"patch {release}/{component.name}") as outcome:
            prepared, outcome["status"] = prepare(project, component, records[component.name])
        for name in prepared.ignored:
            console.warn(f"{series_dir(project, component.name, release) / name}: not a .patch file, not applied")
        results.append(prepared)
    return results


# --- listing and checking ----------------------------------------------------------


def list_patches(project: Project, releases: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    rows = []
    for release, component in all_series(project, releases):
        patches, others = discover(series_dir(project, component, release))
        for p in patches:
            meta = parse_patch(p.read_text(encoding="utf-8", errors="surrogateescape"), p.name)
            rows.append((component, release, p.name, meta.subject))
        for p in others:
            rows.append((component, release, p.name, "(ignored: not a .patch file)"))
    return rows


@dataclass(frozen=True)
class CheckResult:
    release: str
    component: str
    patches: int
    ok: bool
    detail: str
    exit_code: int = 0


def check(project: Project, releases: list[str] | None = None, offline: bool = False) -> list[CheckResult]:
    """Apply every series to its ref in a scratch tree; nothing is kept or built."""
    results = []
    for release, name in all_series(project, releases):
        component = project.component(release, name)
        patches, _ = discover(series_dir(project, name, release))
        with console.step(f"check {release}/{name}") as outcome:
            try:
                source, _ = fetch_component(project, component, offline)
                with tempfile.TemporaryDirectory(prefix="patches-check-") as scratch:
                    apply_series(project, component, source, patches, Path(scratch) / "tree")
                results.append(CheckResult(release, name, len(patches), True, "applies"))
            except PipelineError as error:
                outcome["status"] = "FAILED"
                results.append(CheckResult(release, name, len(patches), False, str(error), error.exit_code))
    return results
