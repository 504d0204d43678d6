"""The patch lifecycle on real repositories: backport, from-tree, Gerrit import, refresh, upstreamed, remove, renumber.

Upstream is ``conftest.Upstream`` (master, stable/2.0 cut at 2.0.0.0rc1, a
master fix with a Change-Id cherry-picked with -x, tags 2.0.0 and 2.0.1);
Gerrit is a local bare repository with ``refs/changes/...`` refs; the
project repository is a git work tree, so refusals of uncommitted changes
are real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import REPO_ROOT, git_env, invoke, make_patch, run_git

from pipeline.core.errors import AUDIT_FINDINGS_EXIT, UPSTREAMED_EXIT


def series_files(layout, component="demo", release="2025.2") -> dict[str, bytes]:
    directory = layout.root / "patches" / component / release
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*"))} if directory.is_dir() else {}


def commit_project(layout) -> None:
    """The project repository as an operator keeps it: everything committed."""
    if not (layout.root / ".git").exists():
        run_git(layout.root, "init", "-q")
        (layout.root / ".gitignore").write_text("build/\n")
    run_git(layout.root, "add", "-A")
    run_git(layout.root, "commit", "-q", "--allow-empty", "-m", "state")


def ok(result, code=0):
    assert result.returncode == code, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def edit(rel, old, new):
    def apply(repo):
        path = repo / rel
        text = path.read_text()
        assert old in text, (rel, old)
        path.write_text(text.replace(old, new))
    return apply


# --- patches.new --commit -------------------------------------------------------------------


def test_backport_from_master_keeps_origin_and_applies(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.0"})
    commit_project(layout)
    result = ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo",
                       "--commit", upstream.master_only[:10], "--format", "json"))
    rows = json.loads(result.stdout)
    assert [r["patch"] for r in rows] == ["patches/demo/2025.2/0001-Master-only-change.patch"]
    text = (layout.root / rows[0]["patch"]).read_text()
    assert text.startswith("From ") and "From: Upstream Dev <dev@upstream.example>" in text
    assert f"(cherry picked from commit {upstream.master_only})" in text
    assert "Subject: [PATCH] Master only change" in text
    date = run_git(upstream.path, "log", "-1", "--format=%aD", upstream.master_only)
    assert f"Date: {date}" in text  # the original author date, not now
    ok(invoke(layout, "patches.check", "--release", "2025.2"))
    # a second backport is numbered after the first
    rows = json.loads(ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo",
                                "--commit", upstream.add_sub, "--format", "json")).stdout)
    assert rows[0]["status"] == "already in the ref" and len(series_files(layout)) == 1


def test_conflict_stops_with_files_and_worktree_then_continue(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})  # README differs from master's parent: a real conflict
    commit_project(layout)
    result = ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo",
                       "--commit", upstream.master_only), 60)
    assert "conflicts with demo (2025.2, after the current series) in README" in result.stderr
    worktree = layout.root / "build" / "lifecycle" / "2025.2" / "demo" / "worktree"
    assert f"the worktree is {worktree}" in result.stderr and "--continue" in result.stderr
    assert series_files(layout) == {}
    # another writer is refused while the operation is open
    again = ok(invoke(layout, "patches.renumber", "--release", "2025.2", "--component", "demo"), 60)
    assert "stopped on a conflict" in again.stderr
    early = ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo", "--continue"), 60)
    assert "README" in early.stderr
    (worktree / "README").write_text("demo stable fix, on master\n")
    run_git(worktree, "add", "README")
    rows = json.loads(ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo", "--continue",
                                "--format", "json")).stdout)
    assert rows[0]["status"] == "added" and not worktree.exists()
    text = (layout.root / rows[0]["patch"]).read_text()
    assert "+demo stable fix, on master" in text and "-demo stable fix" in text
    assert f"(cherry picked from commit {upstream.master_only})" in text
    ok(invoke(layout, "patches.check", "--release", "2025.2"))


def test_abort_leaves_everything_as_it_was(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    commit_project(layout)
    ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo", "--commit", upstream.master_only), 60)
    result = ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo", "--abort"))
    assert "the repository is as it was" in result.stderr
    assert not (layout.root / "build" / "lifecycle" / "2025.2" / "demo").exists()
    assert run_git(layout.root, "status", "--porcelain") == ""
    nothing = ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo", "--continue"), 7)
    assert "no stopped" in nothing.stderr


def test_unknown_commit_is_named(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.0"})
    result = ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo", "--commit", "deadbeef12"), 10)
    assert "commit deadbeef12 is not in" in result.stderr


# --- patches.new --from-tree -------------------------------------------------------------------


def test_from_tree_turns_commits_into_patches(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    layout.add_patch("demo", "2025.2", "0001-swap.patch",
                     make_patch(upstream.path, edit("demo/core.py", "a + b", "b + a"), "Swap"))
    commit_project(layout)
    ok(invoke(layout, "patch", "--release", "2025.2"))
    tree = layout.root / "build" / "patched" / "2025.2" / "demo"
    (tree / "demo" / "core.py").write_text((tree / "demo" / "core.py").read_text() + "\n\ndef mul(a, b):\n    return a * b\n")
    dirty = ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo", "--from-tree"), 62)
    assert "demo/core.py" in dirty.stderr
    run_git(tree, "commit", "-q", "-am", "Add mul\n\nCloses-Bug: #2000002",
            env=git_env("2025-03-01T00:00:00Z", "Op Erator <op@example.org>"))
    rows = json.loads(ok(invoke(layout, "patches.new", "--release", "2025.2", "--component", "demo", "--from-tree",
                                "--format", "json")).stdout)
    assert [r["patch"] for r in rows] == ["patches/demo/2025.2/0002-Add-mul.patch"]
    text = (layout.root / rows[0]["patch"]).read_text()
    assert "From: Op Erator <op@example.org>" in text and "Closes-Bug: #2000002" in text and "Patch-File" not in text
    ok(invoke(layout, "patch", "--release", "2025.2"))
    assert "def mul" in (tree / "demo" / "core.py").read_text()


# --- patches.import --------------------------------------------------------------------------


@pytest.fixture
def gerrit(tmp_path, upstream):
    """A bare repository serving two changes the way Gerrit does: 1240 (one patch set) and 1245 (two, Depends-On 1240)."""
    base = tmp_path / "gerrit"
    bare = base / "demo"
    subprocess.run(["git", "clone", "-q", "--bare", str(upstream.path), str(bare)], check=True)
    work = tmp_path / "gerrit-work"
    subprocess.run(["git", "clone", "-q", str(upstream.path), str(work)], check=True)
    run_git(work, "checkout", "-q", "origin/stable/2.0")

    def change(number, patchset, edit_fn, message, parent):
        run_git(work, "checkout", "-q", "--detach", parent)
        edit_fn(work)
        run_git(work, "add", "-A")
        run_git(work, "commit", "-q", "-m", message, env=git_env("2025-02-01T00:00:00Z", "Rev Iewer <rev@example.org>"))
        sha = run_git(work, "rev-parse", "HEAD")
        run_git(work, "push", "-q", str(bare), f"{sha}:refs/changes/{number % 100:02d}/{number}/{patchset}")
        return sha

    dep = change(1240, 1, lambda r: (r / "demo" / "extra.py").write_text("EXTRA = 1\n"),
                 f"Add extra\n\nChange-Id: I{'4' * 40}", "origin/stable/2.0")
    change(1245, 1, edit("demo/core.py", "a + b", "a+b"), f"Tidy add\n\nChange-Id: I{'5' * 40}", "origin/stable/2.0")
    change(1245, 2, edit("demo/core.py", "a + b", "int(a) + int(b)"),
           f"Cast in add\n\nDepends-On: https://review.example.org/c/openstack/demo/+/1240\n"
           f"Depends-On: https://review.example.org/c/openstack/other/+/999\nChange-Id: I{'5' * 40}", dep)
    return base


def test_import_fetches_latest_patch_set_and_its_dependencies(layout, upstream, gerrit):
    layout.release("2025.2", {"demo": "2.0.1"})
    layout.settings_overrides["gerrit_base"] = str(gerrit)
    commit_project(layout)
    result = ok(invoke(layout, "patches.import", "--release", "2025.2", "--component", "demo", "--change", "1245",
                       "--format", "json"))
    rows = json.loads(result.stdout)
    assert [r["patch"] for r in rows] == ["patches/demo/2025.2/0001-Add-extra.patch",
                                          "patches/demo/2025.2/0002-Cast-in-add.patch"]
    assert "not a change of demo" in result.stderr  # the other project's dependency is named, not imported
    cast = (layout.root / rows[1]["patch"]).read_text()
    assert "Gerrit-Change: 1245/2" in cast and f"Change-Id: I{'5' * 40}" in cast and "int(a) + int(b)" in cast
    assert "Gerrit-Change: 1240/1" in (layout.root / rows[0]["patch"]).read_text()
    ok(invoke(layout, "patches.check", "--release", "2025.2"))
    # an older patch set by number, via --gerrit; the series already carries 1245
    again = ok(invoke(layout, "patches.import", "--release", "2025.2", "--component", "demo", "--change", "1245/1",
                      "--gerrit", str(gerrit)), 7)
    assert "already carried" in again.stderr
    missing = ok(invoke(layout, "patches.import", "--release", "2025.2", "--component", "demo", "--change", "777"), 10)
    assert "Gerrit change 777 has no patch sets" in missing.stderr


# --- patches.remove / patches.renumber -----------------------------------------------------------


def three_patches(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    layout.add_patch("demo", "2025.2", "0001-a.patch", make_patch(upstream.path, edit("demo/core.py", "a + b", "b + a"), "A"))
    layout.add_patch("demo", "2025.2", "0002-b.patch",
                     make_patch(upstream.path, lambda r: (r / "demo" / "b.py").write_text("B = 1\n"), "B"))
    run_git(upstream.path, "checkout", "-q", "stable/2.0")
    (upstream.path / "demo" / "b.py").write_text("B = 1\n")  # C changes the file B adds: it needs B
    run_git(upstream.path, "add", "-A")
    run_git(upstream.path, "commit", "-q", "-m", "tmp")
    layout.add_patch("demo", "2025.2", "0003-c.patch", make_patch(upstream.path, edit("demo/b.py", "1", "2"), "C"))
    run_git(upstream.path, "reset", "-q", "--hard", "HEAD~1")
    run_git(upstream.path, "checkout", "-q", "master")


def test_remove_renumbers_and_refuses_a_needed_patch(layout, upstream):
    three_patches(layout, upstream)
    commit_project(layout)
    before = series_files(layout)
    refused = ok(invoke(layout, "patches.remove", "--release", "2025.2", "--component", "demo", "0002-b.patch"), 20)
    assert "refused to remove patches/demo/2025.2/0002-b.patch" in refused.stderr and "0003-c.patch" in refused.stderr
    assert series_files(layout) == before
    ok(invoke(layout, "patches.remove", "--release", "2025.2", "--component", "demo", "1", "--renumber"))
    assert series_files(layout) == {"0001-b.patch": before["0002-b.patch"], "0002-c.patch": before["0003-c.patch"]}
    unknown = ok(invoke(layout, "patches.remove", "--release", "2025.2", "--component", "demo", "9"), 7)
    assert "0001-b.patch, 0002-c.patch" in unknown.stderr


def test_renumber_fixes_mixed_widths_and_gaps(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    first = make_patch(upstream.path, edit("demo/core.py", "a + b", "b + a"), "First")
    second = make_patch(upstream.path, lambda r: (r / "NEWS").write_text("x\n"), "Second")
    layout.add_patch("demo", "2025.2", "9-first.patch", first)
    layout.add_patch("demo", "2025.2", "10-second.patch", second)
    (layout.root / "patches/demo/2025.2/NOTES.md").write_text("kept\n")
    commit_project(layout)
    result = ok(invoke(layout, "patches.renumber", "--release", "2025.2", "--component", "demo"))
    assert "9-first.patch -> 01-first.patch" in result.stdout
    assert series_files(layout) == {"01-first.patch": first.encode(), "02-second.patch": second.encode(),
                                    "NOTES.md": b"kept\n"}
    assert "already numbered" in ok(invoke(layout, "patches.renumber", "--release", "2025.2", "--component", "demo")).stdout


def test_uncommitted_patch_files_are_never_rewritten(layout, upstream):
    three_patches(layout, upstream)
    commit_project(layout)
    changed = layout.root / "patches/demo/2025.2/0003-c.patch"
    changed.write_text(changed.read_text().replace("Subject: [PATCH] C", "Subject: [PATCH] C, edited"))
    before = series_files(layout)
    result = ok(invoke(layout, "patches.remove", "--release", "2025.2", "--component", "demo", "0001", "--renumber"), 62)
    assert "patches/demo/2025.2/0003-c.patch" in result.stderr and "uncommitted" in result.stderr
    assert series_files(layout) == before
    # removing without renaming touches only the removed file: allowed
    ok(invoke(layout, "patches.remove", "--release", "2025.2", "--component", "demo", "0001"))
    assert set(series_files(layout)) == {"0002-b.patch", "0003-c.patch"}
    assert series_files(layout)["0003-c.patch"] == before["0003-c.patch"]


# --- patches.refresh ---------------------------------------------------------------------------


def point_release(upstream, name, edit_fn, message):
    run_git(upstream.path, "checkout", "-q", "stable/2.0")
    edit_fn(upstream.path)
    upstream.commit(message)
    upstream.tag(name)
    run_git(upstream.path, "checkout", "-q", "master")


def test_refresh_reports_each_patch_and_moves_the_ref(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.0"})
    run_git(upstream.path, "checkout", "-q", "2.0.0")
    same = make_patch(upstream.path, lambda r: (r / "demo" / "new.py").write_text("N = 1\n"), "Unrelated file")
    moved = make_patch(upstream.path, edit("demo/core.py", "return a + b", "return b + a"), "Swap add")
    landed = make_patch(upstream.path, edit("README", "demo\n", "demo stable fix\n"), "Same as the stable fix")
    run_git(upstream.path, "checkout", "-q", "master")
    layout.add_patch("demo", "2025.2", "0001-unrelated.patch", same)
    layout.add_patch("demo", "2025.2", "0002-swap.patch", moved)
    layout.add_patch("demo", "2025.2", "0003-landed.patch", landed)
    point_release(upstream, "2.0.2", edit("demo/core.py", '"""Demo service core."""\n', '"""Demo service core."""\n\nVERSION = 2\n'),
                  "Add a version constant")
    commit_project(layout)
    dry = ok(invoke(layout, "patches.refresh", "--release", "2025.2", "--to", "2.0.2", "--dry-run", "--format", "json"))
    results = {r["patch"].rsplit("/", 1)[1]: r for r in json.loads(dry.stdout)}
    assert {k: r["result"] for k, r in results.items()} == {
        "0001-unrelated.patch": "unchanged", "0002-swap.patch": "refreshed", "0003-landed.patch": "already upstream"}
    assert results["0003-landed.patch"]["evidence"] == "patch-id"
    assert results["0003-landed.patch"]["upstream"] == upstream.stable_fix
    assert run_git(layout.root, "status", "--porcelain") == ""  # a dry run writes nothing
    before = series_files(layout)
    ok(invoke(layout, "patches.refresh", "--release", "2025.2", "--to", "2.0.2"))
    after = series_files(layout)
    assert set(after) == {"0001-unrelated.patch", "0002-swap.patch"}
    assert after["0001-unrelated.patch"] == before["0001-unrelated.patch"]
    old_head, new_head = (before["0002-swap.patch"].split(b"\n---\n")[0], after["0002-swap.patch"].split(b"\n---\n")[0])
    assert old_head == new_head  # the metadata is kept byte for byte; only the diff moved
    hunk = re.compile(rb"^@@ -(\d+),", re.M)
    assert int(hunk.search(after["0002-swap.patch"]).group(1)) == int(hunk.search(before["0002-swap.patch"]).group(1)) + 2
    assert 'demo: "2.0.2"' in (layout.root / "releases/2025.2/source-refs.yaml").read_text()
    ok(invoke(layout, "patches.check", "--release", "2025.2"))


def test_refresh_conflict_writes_nothing_until_the_series_is_whole(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.0"})
    run_git(upstream.path, "checkout", "-q", "2.0.0")
    layout.add_patch("demo", "2025.2", "0001-greet.patch",
                     make_patch(upstream.path, edit("demo/core.py", '"hello, "', '"hi, "'), "Shorter greeting"))
    run_git(upstream.path, "checkout", "-q", "master")
    point_release(upstream, "2.0.2", edit("demo/core.py", '"hello, "', '"hello there, "'), "Longer greeting")
    commit_project(layout)
    before = series_files(layout)
    result = ok(invoke(layout, "patches.refresh", "--release", "2025.2", "--component", "demo", "--to", "2.0.2"), 60)
    assert "patches/demo/2025.2/0001-greet.patch conflicts with demo (2025.2, ref 2.0.2) in demo/core.py" in result.stderr
    assert "conflict" in result.stdout
    assert series_files(layout) == before and run_git(layout.root, "status", "--porcelain") == ""
    worktree = layout.root / "build" / "lifecycle" / "2025.2" / "demo" / "worktree"
    (worktree / "demo" / "core.py").write_text(
        (worktree / "demo" / "core.py").read_text().split("<<<<<<<")[0] + '    return "hi there, " + name\n\n\n'
        "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n")
    run_git(worktree, "add", "-A")
    done = ok(invoke(layout, "patches.refresh", "--release", "2025.2", "--component", "demo", "--continue"))
    assert "refreshed" in done.stdout
    assert b'"hi there, "' in series_files(layout)["0001-greet.patch"]
    assert 'demo: "2.0.2"' in (layout.root / "releases/2025.2/source-refs.yaml").read_text()
    ok(invoke(layout, "patches.check", "--release", "2025.2"))


def test_refresh_of_every_series_stops_at_the_first_conflict_and_names_the_rest(layout, upstream):
    """One worktree to resolve at a time: the components after a conflict are left as they are, and named."""
    from conftest import Upstream

    other = Upstream(upstream.path.parent, "other")
    layout.release("2025.2", {"demo": "2.0.0", "other": "2.0.0"})
    run_git(upstream.path, "checkout", "-q", "2.0.0")
    layout.add_patch("demo", "2025.2", "0001-greet.patch",
                     make_patch(upstream.path, edit("demo/core.py", '"hello, "', '"hi, "'), "Shorter greeting"))
    run_git(upstream.path, "checkout", "-q", "master")
    point_release(upstream, "2.0.2", edit("demo/core.py", '"hello, "', '"hello there, "'), "Longer greeting")
    run_git(other.path, "checkout", "-q", "2.0.0")
    layout.add_patch("other", "2025.2", "0001-new.patch",
                     make_patch(other.path, lambda r: (r / "NEW").write_text("new\n"), "New file"))
    run_git(other.path, "checkout", "-q", "master")
    commit_project(layout)
    refs = (layout.root / "releases/2025.2/source-refs.yaml").read_text()
    result = ok(invoke(layout, "patches.refresh", "--release", "2025.2", "--to", "2.0.2", "--format", "json"), 60)
    rows = json.loads(result.stdout)
    assert [(r["component"], r["result"]) for r in rows] == [("demo", "conflict")]
    assert "not refreshed (stopped at the conflict): other" in result.stderr
    assert (layout.root / "releases/2025.2/source-refs.yaml").read_text() == refs
    assert run_git(layout.root, "status", "--porcelain") == ""
    ok(invoke(layout, "patches.refresh", "--release", "2025.2", "--component", "demo", "--abort"))


# --- patches.upstreamed ------------------------------------------------------------------------


def test_upstreamed_by_each_kind_of_evidence(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.0.0rc1"})
    run_git(upstream.path, "checkout", "-q", "2.0.0.0rc1")
    fix = run_git(upstream.path, "format-patch", "-1", "--stdout", upstream.fix) + "\n"
    picked = make_patch(upstream.path, edit("demo/core.py", '"hello "', '"hello, "'),
                        f"Fix greet (backport)\n\n(cherry picked from commit {upstream.fix})")
    run_git(upstream.path, "checkout", "-q", "master")
    layout.add_patch("demo", "2025.2", "0001-change-id.patch", fix)
    layout.add_patch("demo", "2025.2", "0002-picked.patch", picked)
    run_git(upstream.path, "checkout", "-q", "2.0.0")
    layout.add_patch("demo", "2025.2", "0003-stable.patch",
                     make_patch(upstream.path, edit("README", "demo\n", "demo stable fix\n"), "Same diff as upstream's"))
    run_git(upstream.path, "checkout", "-q", "2.0.0.0rc1")

    def both(repo):
        edit("demo/core.py", '"hello "', '"hello, "')(repo)
        edit("README", "demo\n", "demo stable fix\n")(repo)
    layout.add_patch("demo", "2025.2", "0004-both.patch", make_patch(upstream.path, both, "Two upstream fixes in one"))
    layout.add_patch("demo", "2025.2", "0005-local.patch",
                     make_patch(upstream.path, lambda r: (r / "LOCAL").write_text("ours\n"), "Ours only"))
    run_git(upstream.path, "checkout", "-q", "master")
    result = ok(invoke(layout, "patches.upstreamed", "--release", "2025.2", "--to", "2.0.1", "--format", "json"),
                UPSTREAMED_EXIT)
    rows = {r["patch"].rsplit("/", 1)[1]: r for r in json.loads(result.stdout)}
    assert {k: (r["upstream"], r["evidence"], r["commit"]) for k, r in rows.items()} == {
        "0001-change-id.patch": (True, "change-id", upstream.picked),
        "0002-picked.patch": (True, "cherry-picked-from", upstream.picked),
        "0003-stable.patch": (True, "patch-id", upstream.stable_fix),
        "0004-both.patch": (True, "reverse-apply", upstream.head("2.0.1^{commit}")),
        "0005-local.patch": (False, None, None),
    }
    assert all(r["release"] == "2025.2" and r["component"] == "demo" for r in rows.values())
    # against its own ref nothing is upstream: exit 0, and a table
    own = ok(invoke(layout, "patches.upstreamed", "--release", "2025.2"))
    assert "0005-local.patch" in own.stdout and " yes " not in own.stdout


# --- patches.audit ---------------------------------------------------------------------------

CONF = '''from oslo_config import cfg

core_opts = [
    cfg.StrOpt('greeting',
               default='hello',
               help='What to say.'),
    cfg.IntOpt('workers',
               default=1,
               help='How many.'),
]
'''
AUDITED = {
    "demo/conf/core.py": CONF,
    "demo/compute/rpcapi.py": "class ComputeAPI:\n    def __init__(self):\n"
                              "        target = messaging.Target(topic='compute', version='6.0')\n",
    "demo/objects/instance.py": "class Instance(base.Object):\n    # Version 1.0: Initial version\n    VERSION = '1.0'\n",
    "demo/api/openstack/api_version_request.py": "_MAX_API_VERSION = '2.90'\n",
    "demo/notifications/objects/instance.py": "class InstancePayload(base.NotificationPayloadBase):\n    VERSION = '1.0'\n",
    "requirements.txt": "pbr>=6.0\noslo.config>=9.0\n",
}


def test_audit_rules_phases_and_newer_releases(layout, upstream):
    for rel, text in AUDITED.items():
        upstream.write(rel, text)
    upstream.commit("Add the parts a stable policy guards")
    upstream.tag("2.1.0")
    layout.release("2025.1", {"demo": "2.0.1"}, extra="release_date: 2025-04-02\nend_of_life: 2026-12-01\n")
    layout.release("2025.2", {"demo": "2.1.0"}, extra="release_date: 2025-10-01\n")
    cid = iter(f"\n\nChange-Id: I{n:040x}" for n in range(1, 100))
    patches = {
        "db": (lambda r: upstream.write("demo/db/migrations/versions/0002_add_column.py", "revision = '0002'\n"), "db-schema"),
        "api": (edit("demo/api/openstack/api_version_request.py", "2.90", "2.91"), "http-api"),
        "rpc": (edit("demo/compute/rpcapi.py", "version='6.0'", "version='6.1'"), "rpc-api"),
        "object": (edit("demo/objects/instance.py", "VERSION = '1.0'", "VERSION = '1.1'"), "rpc-api"),
        "notification": (edit("demo/notifications/objects/instance.py", "'1.0'", "'1.1'"), "notification"),
        "config": (edit("demo/conf/core.py", "default='hello'", "default='hi'"), "config"),
        "option": (edit("demo/conf/core.py",
                        "    cfg.IntOpt('workers',\n               default=1,\n               help='How many.'),\n", ""),
                   "config"),
        "requirement": (edit("requirements.txt", "oslo.config>=9.0\n", "oslo.config>=9.4\noslo.messaging>=14.0\n"),
                        "new-dependency"),
        "harmless": (edit("demo/core.py", '"hello, "', '"hello,  "'), None),
    }
    for index, (name, (change, _)) in enumerate(patches.items(), start=1):
        layout.add_patch("demo", "2025.2", f"{index:04d}-{name}.patch",
                         make_patch(upstream.path, change, f"{name} change{next(cid)}"))
    layout.add_patch("demo", "2025.2", "0010-plain.patch",
                     make_patch(upstream.path, lambda r: (r / "LOCAL").write_text("x\n"), "No reference at all"))
    layout.add_patch("demo", "2025.2", "0011-upstream-header.patch",
                     run_git(upstream.path, "format-patch", "-1", "--stdout", upstream.master_only) + "\n")
    # 2025.1: one patch 2025.2 carries (same Change-Id as its 0009), one its ref contains, one neither
    run_git(upstream.path, "checkout", "-q", "2.0.1")
    carried_id = f"\n\nChange-Id: I{9:040x}"
    layout.add_patch("demo", "2025.1", "0001-carried.patch",
                     make_patch(upstream.path, edit("demo/core.py", "a - b", "a-b"), f"carried{carried_id}"))
    layout.add_patch("demo", "2025.1", "0002-contained.patch",
                     make_patch(upstream.path, lambda r: upstream.write("demo/conf/core.py", CONF), f"conf{next(cid)}"))
    layout.add_patch("demo", "2025.1", "0003-lost.patch",
                     make_patch(upstream.path, lambda r: (r / "OLD").write_text("x\n"), f"lost{next(cid)}"))
    run_git(upstream.path, "checkout", "-q", "master")

    result = ok(invoke(layout, "patches.audit", "--format", "json", "--date", "2026-03-01"))
    findings = json.loads(result.stdout)
    by_patch: dict[str, set] = {}
    for f in findings:
        assert set(f) >= {"release", "component", "patch", "rule", "detail"} and f["detail"]
        by_patch.setdefault(f["patch"].rsplit("/", 1)[1], set()).add(f["rule"])
    expected = {f"{i:04d}-{name}.patch": {rule} for i, (name, (_, rule)) in enumerate(patches.items(), start=1) if rule}
    expected["0010-plain.patch"] = {"no-upstream-reference"}
    expected["0003-lost.patch"] = {"missing-in-newer-release"}
    assert by_patch == expected
    details = {f["patch"].rsplit("/", 1)[1]: f["detail"] for f in findings}
    assert "adds the migration demo/db/migrations/versions/0002_add_column.py" in details["0001-db.patch"]
    assert "removes the option workers (IntOpt)" in details["0007-option.patch"]
    assert {f["detail"] for f in findings if f["rule"] == "new-dependency"} == {
        "adds oslo.messaging>=14.0 to requirements.txt",
        "raises the minimum of oslo.config from 9.0 to 9.4 in requirements.txt"}
    assert "2025.2 neither carries it nor contains it upstream at demo 2.1.0" in details["0003-lost.patch"]
    assert {f["release"]: f["phase"] for f in findings} == {"2025.1": "II", "2025.2": "I"}
    table = ok(invoke(layout, "patches.audit", "--release", "2025.1", "--date", "2027-01-01", "--strict"),
               AUDIT_FINDINGS_EXIT)
    assert "end of life" in table.stdout and "0003-lost.patch" in table.stdout and "Change-Id" in table.stdout
    ok(invoke(layout, "patches.audit", "--release", "2025.1", "--component", "demo", "--date", "someday"), 7)


# --- the shipped configuration, with real sdists from PyPI ------------------------------------------


@pytest.fixture
def shipped(tmp_path):
    """A copy of the shipped repository (releases, patches) as a committed git work tree, and its CLI environment."""
    root = tmp_path / "shipped"
    for name in ("releases", "patches", "overrides"):
        shutil.copytree(REPO_ROOT / name, root / name)
    run_git(root, "init", "-q")
    run_git(root, "add", "-A")
    run_git(root, "commit", "-q", "-m", "shipped")
    env = {**os.environ, "INVOKE_PIPELINE_ROOT": str(root), "INVOKE_PIPELINE_WORKDIR": str(root / "build"),
           "INVOKE_PIPELINE_CACHE_DIR": str(REPO_ROOT / ".cache" / "tests")}
    return root, env


@pytest.mark.network
@pytest.mark.parametrize(("component", "point_release", "count"),
                         [("keystone", "28.0.2", 3), ("nova", "32.2.1", 1), ("oslo.messaging", "17.1.1", 1)])
def test_shipped_fixes_are_in_the_next_point_release(shipped, component, point_release, count):
    _root, env = shipped
    result = ok(invoke(None, "patches.upstreamed", "--release", "2025.2", "--component", component, "--to",
                       point_release, "--format", "json", env=env), UPSTREAMED_EXIT)
    rows = json.loads(result.stdout)
    assert len(rows) == count and all(r["upstream"] and r["evidence"] == "reverse-apply" and r["commit"] for r in rows)
    assert "no upstream git history" in result.stderr  # opendev is out of reach here: content evidence only
    ok(invoke(None, "patches.upstreamed", "--release", "2025.2", "--component", component, env=env))


@pytest.mark.network
def test_shipped_keystone_refresh_onto_28_0_2_drops_every_patch(shipped):
    root, env = shipped
    refs = (root / "releases/2025.2/source-refs.yaml").read_text()
    result = ok(invoke(None, "patches.refresh", "--release", "2025.2", "--component", "keystone", "--to", "28.0.2",
                       env=env))
    assert result.stdout.count("already upstream") == 3
    assert not (root / "patches/keystone/2025.2").exists()
    assert (root / "releases/2025.2/source-refs.yaml").read_text() == refs.replace('keystone: "28.0.0"', 'keystone: "28.0.2"')
    changed = sorted(line.strip() for line in run_git(root, "status", "--porcelain", "--", "releases", "patches").splitlines())
    assert changed == sorted(["M releases/2025.2/source-refs.yaml", *(
        f"D {p}" for p in run_git(root, "ls-files", "patches/keystone/2025.2").splitlines())])


@pytest.mark.network
def test_shipped_audit(shipped):
    _root, env = shipped
    findings = json.loads(ok(invoke(None, "patches.audit", "--format", "json", "--date", "2026-12-01", env=env)).stdout)
    # No shipped patch carries a Change-Id (masakari's is taken from the diff of two sdists); each fix is found in
    # 2026.1's newer releases by content.
    assert sorted({(f["patch"].split("/")[1], f["rule"]) for f in findings}) == [
        ("keystone", "no-upstream-reference"), ("masakari", "no-upstream-reference"),
        ("nova", "no-upstream-reference"), ("oslo.messaging", "no-upstream-reference")]
    assert {f["phase"] for f in findings} == {"III"}


def test_refresh_of_every_series_moves_each_ref(layout, upstream):
    from conftest import Upstream

    other = Upstream(upstream.path.parent, "other")
    layout.release("2025.2", {"demo": "2.0.0", "other": "2.0.0", "unpatched": "2.0.0"})
    for repo, name in ((upstream, "demo"), (other, "other")):
        run_git(repo.path, "checkout", "-q", "2.0.0")
        layout.add_patch(name, "2025.2", "0001-new.patch",
                         make_patch(repo.path, lambda r: (r / "NEW").write_text("new\n"), "New file"))
        run_git(repo.path, "checkout", "-q", "master")
    refs = layout.root / "releases/2025.2/source-refs.yaml"
    refs.write_text("# pins\n" + refs.read_text().replace('other: "2.0.0"', 'other: "2.0.0"  # keep this comment'))
    commit_project(layout)
    result = ok(invoke(layout, "patches.refresh", "--release", "2025.2", "--to", "2.0.1"))
    assert result.stdout.count("unchanged") == 2
    assert refs.read_text() == ('# pins\ndemo: "2.0.1"\nother: "2.0.1"  # keep this comment\nunpatched: "2.0.0"\n')
