"""The patch stage on real repositories: prepared trees, series order, failures named as what they are."""

from __future__ import annotations

import pytest
from conftest import invoke, make_patch, run_git

from pipeline.core import locks
from pipeline.core.errors import (
    PatchApplyError,
    PatchEncodingError,
    SeriesLayoutError,
    UnsafePatchError,
)
from pipeline.core.files import sha256_bytes
from pipeline.patches import series
from pipeline.sources import fetch as sources


def patch_all(layout, **settings):
    project = layout.project(**settings)
    with locks.hold(project.layout.lock("2025.2"), "test"):
        return {p.component: p for p in series.patch(project, "2025.2")}


def edit(rel, old, new):
    def apply(repo):
        path = repo / rel
        path.write_text(path.read_text().replace(old, new))
    return apply


def test_prepared_tree_has_one_commit_per_patch(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    p1 = layout.add_patch("demo", "2025.2", "0001-a.patch", make_patch(
        upstream.path, edit("demo/core.py", "a + b", "b + a"), "Swap\n\nChange-Id: I" + "2" * 40, "Ann <ann@x.example>"))
    layout.add_patch("demo", "2025.2", "0002-b.patch", make_patch(
        upstream.path, lambda r: (r / "demo" / "new.py").write_text("X = 1\n"), "Add new"))
    (layout.root / "patches/demo/2025.2/NOTES.md").write_text("notes")
    prepared = patch_all(layout)["demo"]
    tree = layout.root / "build" / prepared.tree
    assert [p.subject for p in prepared.patches] == ["Swap", "Add new"]
    assert prepared.patches[0].sha256 == sha256_bytes(p1.read_bytes())
    assert prepared.patches[0].patch_type == "backport"
    log = run_git(tree, "log", "--format=%an|%s", "-3")
    assert log.splitlines() == ["Jane Fixer|Add new", "Ann|Swap", "Upstream Dev|Stable only fix"]
    assert run_git(tree, "rev-parse", "--abbrev-ref", "HEAD") == "patched"
    body = run_git(tree, "log", "-1", "--format=%B", "HEAD~1")
    assert body.rstrip().endswith(f"Change-Id: I{'2' * 40}\nPatch-File: patches/demo/2025.2/0001-a.patch")
    assert (tree / "demo" / "new.py").exists() and run_git(tree, "status", "--porcelain") == ""
    assert prepared.ignored == ("patches/demo/2025.2/NOTES.md",)
    again = patch_all(layout)["demo"]
    assert again.head == prepared.head  # reproducible commits, and a no-op rerun


def test_failing_hunk_names_patch_ref_and_hunk(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    text = make_patch(upstream.path, edit("demo/core.py", "a + b", "b + a"), "Swap").replace("return a + b", "return a * b")
    layout.add_patch("demo", "2025.2", "0001-stale.patch", text)
    with pytest.raises(PatchApplyError) as info:
        patch_all(layout)
    message = str(info.value)
    assert "patches/demo/2025.2/0001-stale.patch does not apply to demo (release 2025.2, ref 2.0.1 = " in message
    assert "demo/core.py: hunk #1 @@" in message and "refresh the patch" in message
    assert not (layout.root / "build" / "patched" / "2025.2" / "demo").exists()  # nothing half-made


def test_already_upstream_is_said_so(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    run_git(upstream.path, "checkout", "-q", "stable/2.0")
    fix = run_git(upstream.path, "format-patch", "-1", "--stdout", upstream.picked) + "\n"
    run_git(upstream.path, "checkout", "-q", "master")
    layout.add_patch("demo", "2025.2", "0001-fix.patch", fix)
    with pytest.raises(PatchApplyError, match="the change is already there"):
        patch_all(layout)


def test_number_widths_and_repeats(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    patch = make_patch(upstream.path, lambda r: (r / "README").write_text("x\n"), "x")
    layout.add_patch("demo", "2025.2", "9-y.patch", patch)
    layout.add_patch("demo", "2025.2", "10-x.patch", patch)
    with pytest.raises(SeriesLayoutError, match="different widths") as info:
        patch_all(layout)
    assert "9-y.patch -> 09-y.patch" in str(info.value)
    result = invoke(layout, "patch", "--release", "2025.2")
    assert result.returncode == 25 and "Traceback" not in result.stderr


def test_crlf_file_in_the_tree(layout, upstream):
    """A real CRLF file upstream: a patch made from it applies and its hash is of its bytes;
    an LF-converted copy of the patch is named as a line-ending mismatch, not as upstream drift."""
    upstream.write("demo/win.txt", "one\r\ntwo\r\n")
    upstream.commit("Windows file")
    upstream.tag("2.1.0")
    layout.release("2025.2", {"demo": "2.1.0"})
    good = make_patch(upstream.path, lambda r: (r / "demo/win.txt").write_bytes(b"one\r\nTWO\r\n"), "crlf edit", raw=True)
    path = layout.add_patch("demo", "2025.2", "0001-crlf.patch", good)
    prepared = patch_all(layout)["demo"]
    assert prepared.patches[0].sha256 == sha256_bytes(path.read_bytes())
    path.write_bytes(good.replace(b"\r\n", b"\n"))
    with pytest.raises(PatchEncodingError, match=r"win\.txt has Windows \(CRLF\) line endings at this ref"):
        patch_all(layout)


def files_under(root):
    """Every file and link under ``root`` with its bytes (a link: its target), so that any write shows."""
    return {str(p.relative_to(root)): str(p.readlink()) if p.is_symlink() else p.read_bytes()
            for p in root.rglob("*") if p.is_symlink() or p.is_file()}


def test_unsafe_patch_is_refused_before_anything_is_written(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    layout.add_patch("demo", "2025.2", "0001-good.patch", make_patch(
        upstream.path, edit("demo/core.py", "a + b", "b + a"), "Swap"))
    layout.add_patch("demo", "2025.2", "0002-evil.patch", make_patch(
        upstream.path, lambda r: (r / "evil").symlink_to("/etc"), "evil"))
    project = layout.project()
    with locks.hold(project.layout.lock("2025.2"), "test"):
        sources.fetch(project, "2025.2")
    workdir = layout.root / "build"
    before = files_under(workdir)
    with pytest.raises(UnsafePatchError, match="outside the source tree"):
        patch_all(layout)
    assert files_under(workdir) == before  # no prepared tree, no record; the fetched source untouched
    assert not project.layout.prepared_tree("2025.2", "demo").exists()


def test_check_applies_in_an_index_and_writes_no_tree(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    layout.add_patch("demo", "2025.2", "0001-a.patch", make_patch(upstream.path, edit("demo/core.py", "a + b", "b + a"), "Swap"))
    project = layout.project()
    series.check(project)
    src = layout.root / "build" / "src" / "2025.2" / "demo"
    objects = run_git(src, "count-objects")
    results = series.check(project)
    assert [(r.component, r.ok) for r in results] == [("demo", True)]
    assert not (layout.root / "build" / "patched").exists()
    assert run_git(src, "status", "--porcelain") == "" and run_git(src, "count-objects") == objects
    layout.add_patch("demo", "2025.2", "0002-bad.patch", make_patch(upstream.path, edit("README", "demo", "x"), "bad")
                     .replace("-demo on master", "-something else"))
    results = series.check(project)
    assert not results[0].ok and results[0].exit_code == 20 and "0002-bad.patch" in results[0].detail
