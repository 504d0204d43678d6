"""One patch file: its metadata, its file changes, its provenance and whether it is safe.

Pure functions over the file's exact bytes (no tree, no git): the three
formats operators have (``git format-patch`` mails, including ``--from``
in-body headers and RFC 2047 or latin-1 headers; ``git show`` / ``git log
-p`` output; plain diffs), the files and hunks a diff touches with their
modes (symbolic links, binary data), what it claims about its origin
(``Change-Id``, ``(cherry picked from commit ...)``, bugs, CVEs, patch type)
and the safety rules that keep it inside its tree.
"""

from __future__ import annotations

import email
import email.header
import email.utils
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.core.errors import (
    BinaryPatchError,
    PatchEncodingError,
    PatchFormatError,
    TypeChangePatchError,
)
from pipeline.core.files import sha256_bytes
from pipeline.core.releases import Project

DEFAULT_AUTHOR = ("openstack-patches", "patches@openstack-patches.invalid")
SUBJECT_PREFIX_RE = re.compile(r"^\s*\[[^\]]*PATCH[^\]]*\]\s*", re.IGNORECASE)
HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
DIFF_START_RE = re.compile(rb"^(diff --git |--- |Index: )", re.MULTILINE)
TRAILER_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):\s*(.+?)\s*$")
SYMLINK_MODE = "120000"


@dataclass(frozen=True)
class FileChange:
    old_path: str | None  # None for a new file
    new_path: str | None  # None for a deleted file
    old_mode: str | None = None
    new_mode: str | None = None
    symlink_target: str | None = None  # the link's target when the result is a symbolic link
    binary: bool = False
    binary_data: bool = False  # a "GIT binary patch" carries the data; "Binary files differ" does not

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or "?"


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
    sha256: str = ""  # of the file's exact bytes
    text: str = ""  # the whole file, decoded for display

    @property
    def message(self) -> str:
        return f"{self.subject}\n\n{self.body}".rstrip() + "\n"

    @property
    def author(self) -> str:
        return f"{self.author_name} <{self.author_email}>"


# --- decoding ---------------------------------------------------------------------


def _decode(raw: bytes, charset: str | None = None) -> str:
    for encoding in (charset, "utf-8"):
        if encoding:
            try:
                return raw.decode(encoding)
            except (LookupError, UnicodeDecodeError):
                continue
    return raw.decode("latin-1")  # every byte is a character: headers from old mailers


def _decode_header(value: str) -> str:
    unfolded = re.sub(r"\r?\n[ \t]+", " ", value)
    try:
        return str(email.header.make_header(email.header.decode_header(unfolded))).strip()
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError):
        return unfolded.strip()


def _unquote_path(path: str) -> str:
    if path.startswith('"') and path.endswith('"'):
        # git C-quotes unusual names; decode the escapes it uses.
        raw = path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
        return raw.encode("latin-1", "replace").decode("utf-8", "replace")
    return path


def _strip_prefix(path: str) -> str | None:
    path = _unquote_path(path.split("\t")[0].rstrip())
    if path == "/dev/null":
        return None
    if path.startswith(("a/", "b/")):
        return path[2:]
    return path


def _subject_from_filename(name: str) -> str:
    stem = re.sub(r"^\d+-", "", PurePosixPath(name).stem)
    return stem.replace("-", " ").strip() or name


# --- the diff ----------------------------------------------------------------------


def parse_diff(diff: str) -> tuple[tuple[FileChange, ...], tuple[Hunk, ...]]:
    """Files (with modes, link targets, binary markers) and hunks of a unified or git diff."""
    changes: list[FileChange] = []
    hunks: list[Hunk] = []
    lines = diff.split("\n")
    current: dict[str, Any] | None = None
    hunk_count = 0

    def flush() -> None:
        nonlocal current
        if current and (current["old"] or current["new"]):
            changes.append(FileChange(current["old"], current["new"], current["old_mode"], current["new_mode"],
                                      current["target"], current["binary"], current["binary_data"]))
        current = None

    def start(old: str | None, new: str | None) -> dict[str, Any]:
        return {"old": old, "new": new, "old_mode": None, "new_mode": None, "target": None,
                "binary": False, "binary_data": False, "in_hunk": False}

    remaining = [0, 0]  # old and new lines left in the current hunk
    i = 0
    while i < len(lines):
        line = lines[i]
        if remaining[0] > 0 or remaining[1] > 0:
            # Inside a hunk every line is content, even one that looks like "--- x".
            if line.startswith(" ") or line == "":
                remaining[0] -= 1
                remaining[1] -= 1
            elif line.startswith("-"):
                remaining[0] -= 1
            elif line.startswith("+"):
                remaining[1] -= 1
            elif not line.startswith("\\"):
                remaining = [0, 0]  # a malformed hunk: let git report it
                continue
            i += 1
            continue
        if line.startswith("diff --git "):
            flush()
            hunk_count = 0
            m = re.match(r'^diff --git ("?a/.*?"?) ("?b/.*"?)$', line)
            current = start(*(map(_strip_prefix, m.groups()) if m else (None, None)))
        elif current is not None and not current["in_hunk"] and line.startswith("new file mode "):
            current["old"], current["new_mode"] = None, line.split()[-1]
        elif current is not None and not current["in_hunk"] and line.startswith("deleted file mode "):
            current["new"], current["old_mode"] = None, line.split()[-1]
        elif current is not None and not current["in_hunk"] and line.startswith("old mode "):
            current["old_mode"] = line.split()[-1]
        elif current is not None and not current["in_hunk"] and line.startswith("new mode "):
            current["new_mode"] = line.split()[-1]
        elif current is not None and not current["in_hunk"] and re.match(r"^index [0-9a-f]+\.\.[0-9a-f]+ \d{6}$", line):
            mode = line.split()[-1]  # unchanged mode of a modified file
            current["old_mode"] = current["old_mode"] or mode
            current["new_mode"] = current["new_mode"] or mode
        elif current is not None and not current["in_hunk"] and line.startswith(("rename from ", "copy from ")):
            current["old"] = _unquote_path(line.split(" ", 2)[2])
        elif current is not None and not current["in_hunk"] and line.startswith(("rename to ", "copy to ")):
            current["new"] = _unquote_path(line.split(" ", 2)[2])
        elif current is not None and line.startswith("GIT binary patch"):
            current["binary"] = current["binary_data"] = True
        elif current is not None and re.match(r"^Binary files .* differ$", line):
            current["binary"] = True
        elif line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if current is None or current["in_hunk"]:
                flush()
                hunk_count = 0
                current = start(None, None)
            current["old"] = _strip_prefix(line[4:])
            current["new"] = _strip_prefix(lines[i + 1][4:])
            i += 1
        elif current is not None and (m := HUNK_RE.match(line)):
            current["in_hunk"] = True
            remaining = [int(m.group(2) if m.group(2) is not None else 1), int(m.group(4) if m.group(4) is not None else 1)]
            hunk_count += 1
            hunks.append(Hunk(current["new"] or current["old"] or "?", hunk_count, int(m.group(1)), line))
            if current["new_mode"] == SYMLINK_MODE:
                # The link's new target is the added line of its (single) hunk.
                target = next((l[1:] for l in lines[i + 1:] if l.startswith("+")), None)
                if target is not None:
                    current["target"] = target
        i += 1
    flush()
    return tuple(changes), tuple(hunks)


# --- the whole file ------------------------------------------------------------------


def _in_body_headers(body_lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """git am's in-body headers: ``From:``/``Date:``/``Subject:`` lines opening the body (``format-patch --from``)."""
    headers: dict[str, str] = {}
    index = 0
    while index < len(body_lines) and not body_lines[index].strip():
        index += 1
    start = index
    while index < len(body_lines):
        m = re.match(r"^(From|Date|Subject):\s*(.*)$", body_lines[index])
        if not m:
            break
        headers[m.group(1)] = m.group(2).strip()
        index += 1
    if headers and (index == len(body_lines) or not body_lines[index].strip()):
        return headers, body_lines[index + 1:] if index < len(body_lines) else []
    return {}, body_lines[start:]


def parse_patch(raw: bytes, filename: str = "") -> PatchMeta:
    """Metadata and file list of a format-patch mail, ``git show`` output or plain diff."""
    label = filename or "patch"
    start = DIFF_START_RE.search(raw)
    if not start:
        raise PatchFormatError(f"{label}: contains no diff", hint="create patches with git format-patch")
    head_raw, diff_raw = raw[: start.start()], raw[start.start():]
    if re.search(rb"^(diff --git |@@ |\+\+\+ ).*\r$", diff_raw, re.MULTILINE):
        raise PatchEncodingError(
            f"{label}: the patch file has Windows (CRLF) line endings, also on git's own diff lines, "
            "so an editor or a checkout converted it",
            hint="convert it back (dos2unix, or `git config core.autocrlf false` before checking out) and rerun",
        )
    diff = diff_raw.decode("utf-8", "surrogateescape")
    changes, hunks = parse_diff(diff)
    if not changes:
        raise PatchFormatError(f"{label}: no file changes found in the diff", hint="create patches with git format-patch")
    for change in changes:
        if change.binary and not change.binary_data:
            raise BinaryPatchError(
                f"{label}: {change.path} is a binary change without its data ('Binary files ... differ')",
                hint="regenerate the patch with `git format-patch --binary` (or `git diff --binary`)",
            )
        if change.old_path and change.new_path and change.old_mode and change.new_mode and \
                (change.old_mode == SYMLINK_MODE) != (change.new_mode == SYMLINK_MODE):
            kinds = ("a regular file", "a symbolic link")
            raise TypeChangePatchError(
                f"{label}: {change.path} changes {kinds[change.old_mode == SYMLINK_MODE]} into "
                f"{kinds[change.new_mode == SYMLINK_MODE]} in place (old mode {change.old_mode}, new mode {change.new_mode})",
                hint="git applies a type change only as a deletion followed by a new file; regenerate the patch with git format-patch",
            )
    text = raw.decode("utf-8", "replace")
    digest = sha256_bytes(raw)

    charset = None
    m = re.search(rb"^Content-Type:.*charset=\"?([A-Za-z0-9_-]+)", head_raw, re.MULTILINE | re.IGNORECASE)
    if m:
        charset = m.group(1).decode("ascii")
    lines = _decode(head_raw, charset).replace("\r\n", "\n").split("\n")
    if lines and re.match(r"^From [0-9a-f]{40} ", lines[0]):
        lines = lines[1:]
    if lines and re.match(r"^(From|Subject|Date): ", lines[0]):
        header_end = next((i for i, l in enumerate(lines) if not l.strip()), len(lines))
        msg = email.message_from_string("\n".join(lines[:header_end]) + "\n\n")
        in_body, body_lines = _in_body_headers(lines[header_end + 1:])
        if "---" in body_lines:  # the diffstat separator ends the message, as for git am
            body_lines = body_lines[: body_lines.index("---")]
        name, addr = email.utils.parseaddr(_decode_header(in_body.get("From") or msg.get("From") or ""))
        subject = SUBJECT_PREFIX_RE.sub("", _decode_header(in_body.get("Subject") or msg.get("Subject") or ""))
        return PatchMeta(
            subject=subject or _subject_from_filename(filename),
            body="\n".join(body_lines).strip(),
            author_name=name or DEFAULT_AUTHOR[0], author_email=addr or DEFAULT_AUTHOR[1],
            date=in_body.get("Date") or msg.get("Date"), source_format="format-patch",
        changes=changes, hunks=hunks, sha256=digest, text=text,
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
            subject=subject, body="\n".join(message[1:]).strip(),
            author_name=name or DEFAULT_AUTHOR[0], author_email=addr or DEFAULT_AUTHOR[1],
            date=headers.get("Date") or headers.get("AuthorDate"), source_format="git-show",
        changes=changes, hunks=hunks, sha256=digest, text=text,
        )
    return PatchMeta(
        subject=_subject_from_filename(filename), body="\n".join(lines).strip(),
        author_name=DEFAULT_AUTHOR[0], author_email=DEFAULT_AUTHOR[1], date=None, source_format="plain",
        changes=changes, hunks=hunks, sha256=digest, text=text,
    )


# --- provenance ------------------------------------------------------------------------


# --- safety ----------------------------------------------------------------------------


def read_patch(project: Project, path: Path) -> PatchMeta:
    return parse_patch(path.read_bytes(), project.layout.repo_rel(path))
