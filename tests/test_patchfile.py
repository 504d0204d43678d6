"""One patch file: real format-patch, `git show` and plain-diff files, their metadata, provenance and safety."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO_ROOT, make_patch, run_git

from pipeline.core.errors import (
    BinaryPatchError,
    PatchEncodingError,
    PatchFormatError,
    TypeChangePatchError,
)
from pipeline.patches.patchfile import parse_diff, parse_patch
from pipeline.patches.provenance import provenance, symlinks_after, unsafe_paths

SHIPPED = sorted((REPO_ROOT / "patches").glob("*/*/*.patch"))


def commit_in(repo: Path, edit, message: str, author: str = "Jane Fixer <jane@fix.example>") -> str:
    edit(repo)
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", f"--author={author}", "-m", message)
    return run_git(repo, "rev-parse", "HEAD")


def test_format_patch_headers(upstream):
    text = make_patch(upstream.path, lambda r: (r / "demo" / "core.py").write_text("x = 1\n"),
                      "rabbit: a subject that is long enough to be folded by git format-patch when it is written\n\n"
                      "Body line one.\n\nCloses-Bug: #2131652\nChange-Id: I" + "0" * 40,
                      "Jörg Fixer <jorg@fix.example>")
    meta = parse_patch(text.encode(), "0002-x.patch")
    assert meta.source_format == "format-patch"
    assert meta.subject.startswith("rabbit: a subject that is long enough") and "\n" not in meta.subject
    assert (meta.author_name, meta.author_email) == ("Jörg Fixer", "jorg@fix.example")
    assert meta.body.startswith("Body line one.") and "1 file changed" not in meta.body
    origin = provenance(meta)
    assert origin.patch_type == "backport" and origin.change_id == "I" + "0" * 40
    assert origin.bugs == (("Closes-Bug", "2131652"),)


def test_format_patch_from_keeps_the_author_not_the_sender(upstream):
    """`git format-patch --from` puts the sender in the mail header and the author in the body, as git am reads it."""
    text = make_patch(upstream.path, lambda r: (r / "README").write_text("x\n"), "Fix it",
                      "Ann Author <ann@author.example>", "--from=Sam Sender <sam@sender.example>")
    assert "From: Sam Sender" in text and "From: Ann Author" in text
    meta = parse_patch(text.encode(), "0001-x.patch")
    assert (meta.author_name, meta.author_email) == ("Ann Author", "ann@author.example")
    assert meta.subject == "Fix it" and not meta.body.startswith("From:")


def test_git_show_and_plain_diff(upstream):
    sha = commit_in(upstream.path, lambda r: (r / "README").write_text("y\n"), "Fix the thing\n\nLonger explanation.\n\n"
                    f"(cherry picked from commit {'a' * 40})", "Ann Upstream <ann@up.example>")
    show = run_git(upstream.path, "show", sha) + "\n"
    meta = parse_patch(show.encode(), "0001-x.patch")
    assert meta.source_format == "git-show"
    assert meta.subject == "Fix the thing" and meta.author == "Ann Upstream <ann@up.example>"
    assert provenance(meta).cherry_picked_from == ("a" * 40,)
    plain = run_git(upstream.path, "diff", f"{sha}~1", sha) + "\n"
    meta = parse_patch(plain.encode(), "0003-fix-the-frobnicator.patch")
    assert (meta.source_format, meta.subject, meta.date) == ("plain", "fix the frobnicator", None)
    assert provenance(meta).patch_type == "unofficial"


def test_latin1_header(upstream):
    text = make_patch(upstream.path, lambda r: (r / "README").write_text("z\n"), "Fix", "Jose Munoz <j@m.example>")
    raw = text.replace("Jose Munoz", "José Muñoz").encode("latin-1")
    meta = parse_patch(raw, "0001-x.patch")
    assert meta.author_name == "José Muñoz"


def test_crlf_patch_file_is_named_as_such(upstream):
    text = make_patch(upstream.path, lambda r: (r / "README").write_text("z\n"), "Fix")
    with pytest.raises(PatchEncodingError, match="Windows \\(CRLF\\) line endings"):
        parse_patch(text.replace("\n", "\r\n").encode(), "0001-x.patch")


def test_binary_diff_without_data(upstream):
    (upstream.path / "logo.png").write_bytes(b"\x89PNG\x00\x01")
    run_git(upstream.path, "add", "-A")
    run_git(upstream.path, "commit", "-q", "-m", "logo")
    (upstream.path / "logo.png").write_bytes(b"\x89PNG\x00\x02")
    diff = run_git(upstream.path, "diff") + "\n"
    with pytest.raises(BinaryPatchError, match=r"logo\.png is a binary change without its data"):
        parse_patch(diff.encode(), "0001-x.patch")
    binary = run_git(upstream.path, "diff", "--binary") + "\n"
    assert parse_patch(binary.encode(), "0001-x.patch").changes[0].binary_data


def test_in_place_type_change_is_named():
    diff = ("diff --git a/f b/f\nold mode 100644\nnew mode 120000\nindex ce01362..e69de29\n--- a/f\n+++ b/f\n"
            "@@ -1 +1 @@\n-hello\n+../x\n\\ No newline at end of file\n")
    with pytest.raises(TypeChangePatchError, match="changes a regular file into a symbolic link in place"):
        parse_patch(diff.encode(), "0001-x.patch")


def test_not_a_diff():
    with pytest.raises(PatchFormatError, match=r"0001-notes\.patch: contains no diff"):
        parse_patch(b"just some notes\n", "0001-notes.patch")


def test_content_that_looks_like_headers_stays_content(upstream):
    upstream.write("doc.txt", "-- a\n++ b\n")
    upstream.commit("doc")
    text = make_patch(upstream.path, lambda r: (r / "doc.txt").write_text("++ b\n-- c\n"), "edit doc")
    meta = parse_patch(text.encode(), "0001-x.patch")
    assert [c.path for c in meta.changes] == ["doc.txt"]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_patches_parse_with_real_metadata(path):
    meta = parse_patch(path.read_bytes(), path.name)
    assert meta.source_format == "format-patch"
    assert meta.subject and meta.date and "Upstream-Release:" in meta.body


def test_cve_is_found_in_the_shipped_backport():
    path = next(p for p in SHIPPED if "expires_at" in p.name or "rescop" in p.name.lower())
    assert "CVE-2026-44394" in provenance(parse_patch(path.read_bytes(), path.name)).cves


# --- safety, on real repositories --------------------------------------------------------


def _change(old, new):
    return f"diff --git a/{old} b/{new}\n--- a/{old}\n+++ b/{new}\n@@ -1 +1 @@\n-a\n+b\n".encode()


@pytest.mark.parametrize("diff,reason", [
    (_change("../outside.py", "../outside.py"), "escapes the source tree"),
    (_change(".git/config", ".git/config"), "writes into the .git directory"),
    (b"--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "absolute path"),
])
def test_unsafe_paths(diff, reason):
    problems = unsafe_paths(parse_patch(diff, "p"), set())
    assert any(reason in p for p in problems), problems


def test_new_and_retargeted_symlinks_outside_the_tree_are_refused(upstream):
    """A real symlink in the tree: a patch that points it outside the tree is refused like a new one."""
    repo = upstream.path
    (repo / "docs").mkdir()
    (repo / "docs" / "link").symlink_to("../README")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "link")
    links = {"docs/link"}

    def retarget(r: Path) -> None:
        (r / "docs" / "link").unlink()
        (r / "docs" / "link").symlink_to("../../../etc/shadow")

    retargeted = parse_patch(make_patch(repo, retarget, "retarget").encode(), "0001-x.patch")
    assert retargeted.changes[0].old_mode == retargeted.changes[0].new_mode == "120000"
    assert unsafe_paths(retargeted, links) == ["docs/link: points the symbolic link to ../../../etc/shadow, outside the source tree"]

    inside = parse_patch(make_patch(repo, lambda r: ((r / "docs" / "link").unlink(), (r / "docs" / "link").symlink_to("../pyproject.toml")),
                                    "retarget inside").encode(), "0002-x.patch")
    assert unsafe_paths(inside, links) == []

    through = parse_patch(_change("docs/link/x", "docs/link/x"), "0003-x.patch")
    assert unsafe_paths(through, links) == ["docs/link/x: writes through the symbolic link docs/link"]

    new = parse_patch(make_patch(repo, lambda r: (r / "evil").symlink_to("/etc"), "new link").encode(), "0004-x.patch")
    assert "outside the source tree" in unsafe_paths(new, links)[0]
    assert symlinks_after(new, links) == {"docs/link", "evil"}


def test_hunks_are_numbered_per_file():
    diff = ("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-old\n+new\n same\n"
            "@@ -10,1 +10,2 @@ def add(a, b):\n x\n+y\n")
    _, hunks = parse_diff(diff)
    assert [(h.path, h.index, h.old_start) for h in hunks] == [("x.py", 1, 1), ("x.py", 2, 10)]
