"""Pure logic: patch headers, diff paths, safety rules, ordering, ref classification."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import PatchFormatError
from pipeline.patches import discover, parse_diff, parse_patch, unsafe_paths
from pipeline.sources import RefKind, classify_ref, release_version

REPO_PATCHES = Path(__file__).resolve().parent.parent / "patches"

DIFF = """diff --git a/demo/core.py b/demo/core.py
index 1111111..2222222 100644
--- a/demo/core.py
+++ b/demo/core.py
@@ -1,3 +1,3 @@
-old
+new
 same
@@ -10,2 +10,3 @@ def add(a, b):
 x
+y
"""

FORMAT_PATCH = """From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001
From: =?UTF-8?q?J=C3=B6rg=20Fixer?= <jorg@fix.example>
Date: Wed, 30 Sep 2026 16:19:30 +0000
Subject: [PATCH 2/3] rabbit: a subject that is long enough to be folded by
 git format-patch

Body line one.

Closes-Bug: #2131652
Change-Id: I0123456789abcdef0123456789abcdef01234567
---
 demo/core.py | 2 +-
 1 file changed, 1 insertion(+), 1 deletion(-)

""" + DIFF + "--\n2.39.5\n"

GIT_SHOW = """commit 0123456789abcdef0123456789abcdef01234567
Author: Ann Upstream <ann@up.example>
Date:   Thu Apr 16 09:23:42 2026 +0000

    Fix the thing

    Longer explanation.

""" + DIFF


def test_format_patch_headers():
    meta = parse_patch(FORMAT_PATCH, "0002-x.patch")
    assert meta.source_format == "format-patch"
    assert meta.subject == "rabbit: a subject that is long enough to be folded by git format-patch"
    assert (meta.author_name, meta.author_email) == ("Jörg Fixer", "jorg@fix.example")
    assert meta.date == "Wed, 30 Sep 2026 16:19:30 +0000"
    assert meta.body.startswith("Body line one.") and meta.body.endswith("Change-Id: I0123456789abcdef0123456789abcdef01234567")
    assert "1 file changed" not in meta.body


def test_git_show_headers():
    meta = parse_patch(GIT_SHOW, "0001-x.patch")
    assert meta.source_format == "git-show"
    assert (meta.subject, meta.body) == ("Fix the thing", "Longer explanation.")
    assert meta.author_name == "Ann Upstream" and meta.date == "Thu Apr 16 09:23:42 2026 +0000"


def test_plain_diff_takes_subject_from_file_name():
    meta = parse_patch(DIFF, "0003-fix-the-frobnicator.patch")
    assert meta.source_format == "plain"
    assert meta.subject == "fix the frobnicator"
    assert meta.date is None


def test_hunks_are_numbered_per_file():
    _, hunks = parse_diff(DIFF)
    assert [(h.path, h.index, h.old_start) for h in hunks] == [("demo/core.py", 1, 1), ("demo/core.py", 2, 10)]


def test_not_a_diff():
    with pytest.raises(PatchFormatError, match="0001-notes.patch: contains no diff"):
        parse_patch("just some notes\n", "0001-notes.patch")


def test_shipped_patches_parse_with_real_metadata():
    for path in REPO_PATCHES.glob("*/*/*.patch"):
        meta = parse_patch(path.read_text(), path.name)
        assert meta.source_format == "format-patch", path
        assert meta.subject and meta.date and "Upstream-Release:" in meta.body


def _change(path_old, path_new, extra=""):
    return f"diff --git a/{path_old} b/{path_new}\n{extra}--- a/{path_old}\n+++ b/{path_new}\n@@ -1 +1 @@\n-a\n+b\n"


@pytest.mark.parametrize("diff,reason", [
    (_change("../outside.py", "../outside.py"), "escapes the source tree"),
    (_change("demo/../../x", "demo/../../x"), "escapes the source tree"),
    (_change(".git/config", ".git/config"), "writes into the .git directory"),
    (_change("sub/.git/hooks/post-commit", "sub/.git/hooks/post-commit"), "writes into the .git directory"),
    ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "absolute path"),
    ("diff --git a/evil b/evil\nnew file mode 120000\n--- /dev/null\n+++ b/evil\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n",
     "outside the source tree"),
    ("diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n@@ -0,0 +1 @@\n+demo\n"
     "diff --git a/link/x b/link/x\nnew file mode 100644\n--- /dev/null\n+++ b/link/x\n@@ -0,0 +1 @@\n+x\n",
     "writes through the symbolic link link"),
])
def test_unsafe_patches(tmp_path, diff, reason):
    problems = unsafe_paths(parse_patch(diff, "0001-x.patch"), tmp_path)
    assert any(reason in p for p in problems), problems


def test_existing_symlink_in_tree(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to("/tmp")
    assert unsafe_paths(parse_patch(_change("real/a.py", "real/a.py"), "p"), tmp_path) == []
    assert unsafe_paths(parse_patch(_change("alias/a.py", "alias/a.py"), "p"), tmp_path) == [
        "alias/a.py: writes through the symbolic link alias"]


def test_symlink_inside_tree_is_fine(tmp_path):
    diff = "diff --git a/docs/l b/docs/l\nnew file mode 120000\n--- /dev/null\n+++ b/docs/l\n@@ -0,0 +1 @@\n+../README\n"
    assert unsafe_paths(parse_patch(diff, "p"), tmp_path) == []


def test_discover_orders_by_name_and_reports_others(tmp_path):
    for name in ["0010-c.patch", "0002-b.patch", "0001-a.patch", "README.md", "notes.diff", ".hidden.patch"]:
        (tmp_path / name).write_text("x")
    patches, others = discover(tmp_path)
    assert [p.name for p in patches] == ["0001-a.patch", "0002-b.patch", "0010-c.patch"]
    assert [p.name for p in others] == ["README.md", "notes.diff"]


@pytest.mark.parametrize("ref,kind", [
    ("32.1.0", RefKind.TAG), ("32.0.0.0rc1", RefKind.TAG), ("2024.1-eom", RefKind.TAG),
    ("stable/2025.2", RefKind.BRANCH), ("unmaintained/2024.1", RefKind.BRANCH), ("master", RefKind.BRANCH),
    ("a1b2c3d", RefKind.SHA), ("0123456789abcdef0123456789abcdef01234567", RefKind.SHA),
    ("my-feature", RefKind.NAME),
])
def test_classify_ref(ref, kind):
    assert classify_ref(ref) is kind


def test_release_version():
    assert str(release_version("28.0.0")) == "28.0.0"
    assert release_version("stable/2025.2") is None and release_version("2024.1-eom") is None
