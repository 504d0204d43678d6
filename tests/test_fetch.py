"""Fetching from real git repositories: every ref kind, reruns, and mirrors that heal themselves."""

from __future__ import annotations

import shutil

import pytest
from conftest import Upstream, invoke, run_git

from pipeline.core import locks
from pipeline.core.errors import CacheCorruptError, FetchError
from pipeline.sources import fetch as sources


def fetch(layout, ref=None, **settings):
    if ref is not None:
        layout.release("2025.2", {"demo": ref})
    project = layout.project(**settings)
    with locks.hold(project.layout.lock("2025.2"), "test"):
        return sources.fetch(project, "2025.2")["demo"]


def tree_of(layout, record):
    return layout.root / "build" / record.tree


def test_tag_ref(layout, upstream):
    record = fetch(layout, "2.0.1")
    assert (record.kind, record.method, record.version, record.commit) == ("tag", "git", "2.0.1", upstream.head("2.0.1^{commit}"))
    tree = tree_of(layout, record)
    assert run_git(tree, "describe", "--tags") == "2.0.1" and run_git(tree, "status", "--porcelain") == ""
    assert record.tree == "src/2025.2/demo"  # relative to the work directory
    data = (layout.root / "build" / "2025.2" / "sources.json").read_text()
    assert str(layout.root) not in data


def test_end_of_maintenance_tag(layout, upstream):
    record = fetch(layout, "1.0-eom")
    assert record.commit == upstream.eom and record.kind == "tag"
    assert record.version == "1.0.2.dev1"  # pbr walks back to 1.0.1: eom is no version


def test_branch_is_re_resolved(layout, upstream):
    first = fetch(layout, "stable/2.0")
    assert first.kind == "branch" and first.commit == upstream.head("stable/2.0")
    again = fetch(layout)
    assert again == first
    run_git(upstream.path, "checkout", "-q", "stable/2.0")
    new = upstream.commit("Another stable fix") if upstream.write("README", "again\n") is None else None
    run_git(upstream.path, "checkout", "-q", "master")
    moved = fetch(layout)
    assert moved.commit == new and moved.version == "2.0.2.dev1"


@pytest.mark.parametrize("length", [7, 12, 40])
def test_sha_ref(layout, upstream, length):
    record = fetch(layout, upstream.add_sub[:length])
    assert record.kind == "sha" and record.commit == upstream.add_sub


def test_rerun_needs_no_network(layout, upstream):
    first = fetch(layout, "2.0.1")
    tagged = upstream.head("2.0.1^{commit}")
    moved = upstream.path.parent / "moved"
    shutil.move(str(upstream.path), moved)
    again = fetch(layout)  # the stamp and the tree are enough
    assert again == first and again.commit == tagged
    assert run_git(tree_of(layout, again), "rev-parse", "HEAD") == tagged


def test_unknown_ref_and_unreachable_remote(layout, upstream):
    with pytest.raises(FetchError, match="is neither a branch nor a tag"):
        fetch(layout, "no-such-branch")
    layout.release("2025.2", {"demo": "stable/2.0"})
    with pytest.raises(FetchError) as info:
        fetch(layout, repos={"demo": "https://alice:s3cret@127.0.0.1:9/demo"})
    assert "s3cret" not in str(info.value) and "https://127.0.0.1:9/demo" in str(info.value)


def test_offline_without_mirror(layout, upstream):
    with pytest.raises(FetchError, match="offline mode forbids fetching"):
        fetch(layout, "2.0.1", offline=True)


def test_git_lock_left_by_a_killed_fetch_is_removed(layout, upstream, capfd):
    fetch(layout, "2.0.0")
    mirror = next((layout.root.parent / "cache" / "git").glob("demo-*.git"))
    (mirror / "shallow.lock").write_text("")
    (mirror / "refs" / "tags" / "2.0.1.lock").write_text("")
    record = fetch(layout, "2.0.1")
    assert record.version == "2.0.1"
    err = capfd.readouterr().err
    assert "shallow.lock left by an interrupted git process" in err and "2.0.1.lock" in err


def test_corrupt_mirror_is_fetched_again(layout, upstream, capfd):
    first = fetch(layout, "stable/2.0")
    mirror = next((layout.root.parent / "cache" / "git").glob("demo-*.git"))
    shutil.rmtree(tree_of(layout, first))
    for obj in (mirror / "objects").rglob("*"):
        if obj.is_file() and obj.parent.name != "info":
            obj.chmod(0o644)
            data = bytearray(obj.read_bytes())
            data[len(data) // 2:] = b"\x00" * (len(data) - len(data) // 2)
            obj.write_bytes(bytes(data))
    with pytest.raises(CacheCorruptError, match="is corrupt"):
        fetch(layout, offline=True)
    again = fetch(layout)
    assert again.commit == first.commit and run_git(tree_of(layout, again), "status", "--porcelain") == ""
    assert "removing it and fetching again" in capfd.readouterr().err


def test_staging_left_by_a_killed_run_is_removed(layout, upstream):
    record = fetch(layout, "2.0.1")
    leftover = layout.root / "build" / "src" / "2025.2" / ".staging-demo.abc123"
    (leftover / "new").mkdir(parents=True)
    fetch(layout)
    assert not leftover.exists() and tree_of(layout, record).exists()


def test_a_mirror_being_created_is_not_cleaned_by_another_components_fetch(layout, upstream):
    # Mirrors share one directory and each has its own lock: fetching "other"
    # must leave demo's staging directory alone (demo may be mid-fetch in another
    # thread or process); demo's own next fetch removes it if it is a leftover.
    Upstream(upstream.path.parent, "other")
    layout.release("2025.2", {"demo": "2.0.1", "other": "2.0.1"})
    git_dir = layout.root.parent / "cache" / "git"
    demo_mirror = layout.project().layout.mirror("demo", layout.project().components("2025.2", ["demo"])[0].url)
    in_progress = git_dir / f".staging-{demo_mirror.name}.inflight"
    (in_progress / "new").mkdir(parents=True)
    sources.fetch(layout.project(), "2025.2", ["other"])
    assert in_progress.exists()
    sources.fetch(layout.project(), "2025.2", ["demo"])
    assert not in_progress.exists()


def test_cleaning_one_entry_leaves_entries_whose_names_extend_it(tmp_path):
    # "oslo" is a prefix of "oslo.messaging" up to a dot: cleaning oslo's
    # leftovers must not take oslo.messaging's staging directory.
    from pipeline.core.files import clean_staging

    own, other = tmp_path / ".staging-oslo.k3j_9x2q", tmp_path / ".staging-oslo.messaging.a8d_2kq1"
    own.mkdir(), other.mkdir()
    clean_staging(tmp_path, "oslo")
    assert not own.exists() and other.exists()
    clean_staging(tmp_path, "oslo.messaging")
    assert not other.exists()


def test_cli_fetch_json(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    result = invoke(layout, "fetch", "--release", "2025.2", "--format", "json")
    assert result.returncode == 0, result.stderr
    import json

    rows = json.loads(result.stdout)
    assert rows[0]["component"] == "demo" and rows[0]["version"] == "2.0.1"
    assert "fetch demo" in result.stderr  # progress goes to stderr, never into the JSON
