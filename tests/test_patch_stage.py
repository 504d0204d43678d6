"""Patch stage on real git trees: series, conflicts, unsafe patches, reuse, patches.check."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import patches
from pipeline.errors import PatchApplyError, UnsafePatchError

from conftest import invoke, make_patch, run_git


def edit_greet(repo: Path) -> None:
    core = repo / "demo" / "core.py"
    core.write_text(core.read_text().replace('"hello " + name', '"hello, " + name'))


def edit_add(repo: Path) -> None:
    core = repo / "demo" / "core.py"
    core.write_text(core.read_text().replace("return a + b", "return int(a) + int(b)  # patched"))


def edit_new_file(repo: Path) -> None:
    (repo / "demo" / "added.py").write_text("ADDED = True\n")


@pytest.fixture
def series(layout, upstream):
    """Release 2025.2 with demo at tag 1.0.0 and a two-patch series made against it."""
    layout.release("2025.2", {"demo": "1.0.0"})
    run_git(upstream.path, "checkout", "-q", "1.0.0")
    layout.add_patch("demo", "2025.2", "0001-greet-with-comma.patch",
                     make_patch(upstream.path, edit_greet, "Greet with a comma\n\nCloses-Bug: #1"))
    layout.add_patch("demo", "2025.2", "0002-add-ints.patch",
                     make_patch(upstream.path, lambda r: (edit_add(r), edit_new_file(r)), "Add ints", author="Bob <bob@b.example>"))
    run_git(upstream.path, "checkout", "-q", "master")
    return layout


def prepared_tree(layout) -> Path:
    return layout.root / "build" / "patched" / "2025.2" / "demo"


def test_series_applies_one_commit_per_patch(series, upstream):
    (result,) = patches.patch(series.project(), "2025.2")
    tree = prepared_tree(series)
    assert result.tree == str(tree) and len(result.patches) == 2
    log = run_git(tree, "log", "--format=%an|%s|%(trailers:key=Patch-File,valueonly)", f"{upstream.tag_sha}..HEAD").split("\n\n")
    assert log == [
        "Bob|Add ints|patches/demo/2025.2/0002-add-ints.patch",
        "Jane Fixer|Greet with a comma|patches/demo/2025.2/0001-greet-with-comma.patch",
    ]
    assert "int(a) + int(b)" in (tree / "demo" / "core.py").read_text()
    assert (tree / "demo" / "added.py").exists()
    assert "added.py" in run_git(tree, "ls-files")  # tracked, so pbr ships it
    assert run_git(tree, "status", "--porcelain") == ""


def test_rerun_reuses_and_one_changed_patch_redoes_only_its_series(series, upstream):
    series.release("2025.2", {"demo": "1.0.0", "other": "1.0.0"})
    series.settings_overrides["repos"] = {"other": str(upstream.path)}
    project = series.project()
    first = {p.component: p for p in patches.patch(project, "2025.2")}
    stamp_other = (series.root / "build/.stamps/patch/2025.2/other.json").stat().st_mtime_ns
    assert patches.prepare(project, project.component("2025.2", "demo"),
                           __import__("pipeline.sources", fromlist=["x"]).load_sources(project, "2025.2")["demo"])[1] == "up to date"
    # Reword patch 2: demo is redone, other is untouched.
    p2 = series.root / "patches/demo/2025.2/0002-add-ints.patch"
    p2.write_text(p2.read_text().replace("Subject: [PATCH] Add ints", "Subject: [PATCH] Add integers"))
    second = {p.component: p for p in patches.patch(series.project(), "2025.2")}
    assert second["demo"].head != first["demo"].head
    assert second["demo"].patches[0].commit == first["demo"].patches[0].commit  # reproducible commits
    assert second["other"] == first["other"]
    assert (series.root / "build/.stamps/patch/2025.2/other.json").stat().st_mtime_ns == stamp_other


def test_conflict_names_everything_and_keeps_previous_tree(series, upstream):
    (good,) = patches.patch(series.project(), "2025.2")
    # A third patch made against master, whose README differs from 1.0.0.
    series.add_patch("demo", "2025.2", "0003-readme.patch",
                     make_patch(upstream.path, lambda r: (r / "README").write_text("rewritten\n"), "Touch README"))
    with pytest.raises(PatchApplyError) as info:
        patches.patch(series.project(), "2025.2")
    message = str(info.value)
    assert "0003-readme.patch does not apply to demo (release 2025.2, ref 1.0.0 = " + upstream.tag_sha in message
    assert "README: hunk #1 @@ -1 +1 @@" in message
    assert info.value.exit_code == PatchApplyError.exit_code
    tree = prepared_tree(series)
    assert run_git(tree, "rev-parse", "HEAD") == good.head  # previous good state remains
    assert [p.name for p in tree.parent.iterdir()] == ["demo"]  # no staging leftovers


def test_conflict_on_first_run_leaves_nothing(series, upstream):
    p1 = series.root / "patches/demo/2025.2/0001-greet-with-comma.patch"
    p1.write_text(p1.read_text().replace('-    return "hello " + name', '-    return "bonjour " + name'))
    with pytest.raises(PatchApplyError, match=r"demo/core.py: hunk #1 @@ -2,7 \+2,7 @@"):
        patches.patch(series.project(), "2025.2")
    assert not prepared_tree(series).exists()


def test_already_applied_patch_gets_a_hint(layout, upstream):
    layout.release("2025.2", {"demo": "master"})
    text = make_patch(upstream.path, edit_greet, "Greet")
    edit_greet(upstream.path)
    upstream.commit("Upstream merged the fix")
    layout.add_patch("demo", "2025.2", "0001-greet.patch", text)
    with pytest.raises(PatchApplyError) as info:
        patches.patch(layout.project(), "2025.2")
    assert "already in this ref" in str(info.value)


UNSAFE = {
    "escape": "diff --git a/../escape.txt b/../escape.txt\nnew file mode 100644\n--- /dev/null\n+++ b/../escape.txt\n@@ -0,0 +1 @@\n+x\n",
    "gitdir": "diff --git a/.git/hooks/post-checkout b/.git/hooks/post-checkout\nnew file mode 100755\n--- /dev/null\n+++ b/.git/hooks/post-checkout\n@@ -0,0 +1 @@\n+rm -rf /\n",
    "symlink": "diff --git a/docs b/docs\nnew file mode 120000\n--- /dev/null\n+++ b/docs\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n"
               "diff --git a/docs/passwd b/docs/passwd\nnew file mode 100644\n--- /dev/null\n+++ b/docs/passwd\n@@ -0,0 +1 @@\n+x\n",
}


@pytest.mark.parametrize("kind,reason", [("escape", "escapes the source tree"), ("gitdir", "writes into the .git directory"),
                                         ("symlink", "writes through the symbolic link docs")])
def test_unsafe_patch_is_refused(layout, upstream, kind, reason):
    layout.release("2025.2", {"demo": "1.0.0"})
    layout.add_patch("demo", "2025.2", "0001-evil.patch", UNSAFE[kind])
    with pytest.raises(UnsafePatchError) as info:
        patches.patch(layout.project(), "2025.2")
    assert reason in str(info.value) and "0001-evil.patch" in str(info.value)
    assert not prepared_tree(layout).exists()
    assert not (layout.root / "build" / "src" / "2025.2" / "escape.txt").exists()


def test_symlink_already_in_tree(layout, upstream):
    (upstream.path / "docs").symlink_to("/etc")
    upstream.commit("Add a symlink")
    layout.release("2025.2", {"demo": "master"})
    layout.add_patch("demo", "2025.2", "0001-through.patch",
                     "diff --git a/docs/motd b/docs/motd\n--- a/docs/motd\n+++ b/docs/motd\n@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(UnsafePatchError, match="writes through the symbolic link docs"):
        patches.patch(layout.project(), "2025.2")


def test_other_files_are_reported_not_applied(series, capsys):
    (series.root / "patches/demo/2025.2/README.md").write_text("notes\n")
    (result,) = patches.patch(series.project(), "2025.2")
    assert result.ignored == ("README.md",) and len(result.patches) == 2
    assert "README.md: not a .patch file, not applied" in capsys.readouterr().err


def test_patches_list_and_check_cli(series, upstream):
    listing = invoke(series, "patches.list")
    assert listing.returncode == 0
    assert "demo       2025.2   0001-greet-with-comma.patch  Greet with a comma" in listing.stdout
    ok = invoke(series, "patches.check")
    assert ok.returncode == 0 and "ok" in ok.stdout
    assert not (series.root / "build" / "patched").exists()  # check builds nothing
    series.add_patch("demo", "2025.2", "0003-readme.patch",
                     make_patch(upstream.path, lambda r: (r / "README").write_text("rewritten\n"), "Touch README"))
    bad = invoke(series, "patches.check")
    assert bad.returncode == PatchApplyError.exit_code
    assert "FAILED" in bad.stdout and "0003-readme.patch does not apply" in bad.stderr


def test_cli_patch_conflict_exit_code(series, upstream):
    series.add_patch("demo", "2025.2", "0003-readme.patch",
                     make_patch(upstream.path, lambda r: (r / "README").write_text("rewritten\n"), "Touch README"))
    result = invoke(series, "patch", "--release", "2025.2")
    assert result.returncode == PatchApplyError.exit_code
    assert "error: patches/demo/2025.2/0003-readme.patch does not apply" in result.stderr and "Traceback" not in result.stderr


def test_patches_for_unconfigured_component(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    layout.add_patch("ghost", "2025.2", "0001-x.patch", UNSAFE["escape"])
    result = invoke(layout, "patches.list")
    assert result.returncode == 2 and "patches for ghost, which has no ref" in result.stderr
