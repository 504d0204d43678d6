"""Fetch stage against real git repositories: branch, tag and SHA refs, reruns, offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline import sources
from pipeline.errors import FetchError

from conftest import run_git


def fetch_one(layout, ref, **kw):
    layout.release("2025.2", {"demo": ref})
    return sources.fetch(layout.project(), "2025.2", **kw)["demo"]


def tree_head(record):
    return run_git(__import__("pathlib").Path(record.tree), "rev-parse", "HEAD")


def test_tag_ref(layout, upstream):
    record = fetch_one(layout, "1.0.0")
    assert (record.kind, record.method, record.commit, record.version) == ("tag", "git", upstream.tag_sha, "1.0.0")
    assert record.tree == str(layout.root / "build" / "src" / "2025.2" / "demo")
    assert tree_head(record) == upstream.tag_sha
    # pbr needs the tag in the tree to compute the version
    assert run_git(layout.root / "build/src/2025.2/demo", "describe", "--tags") == "1.0.0"
    data = json.loads((layout.root / "build" / "2025.2" / "sources.json").read_text())
    entry = data["components"]["demo"]
    assert entry["ref"] == "1.0.0" and entry["upstream_revision"] == upstream.tag_sha
    assert entry["origin"] == upstream.path.as_uri()


def test_branch_ref_is_re_resolved(layout, upstream):
    branch_sha = upstream.head("stable/2025.2")
    record = fetch_one(layout, "stable/2025.2")
    assert (record.kind, record.commit) == ("branch", branch_sha)
    run_git(upstream.path, "checkout", "-q", "stable/2025.2")
    upstream.write("README", "backport\n")
    new_sha = upstream.commit("Backport")
    offline = fetch_one(layout, "stable/2025.2", offline=True)
    assert offline.commit == branch_sha
    online = fetch_one(layout, "stable/2025.2")
    assert online.commit == new_sha and tree_head(online) == new_sha


@pytest.mark.parametrize("length", [40, 7])
def test_sha_ref(layout, upstream, length):
    sha = upstream.head("HEAD~1")
    record = fetch_one(layout, sha[:length])
    assert (record.kind, record.commit) == ("sha", sha)
    assert tree_head(record) == sha


@pytest.mark.parametrize("ref", ["1.0.0", "SHA"])
def test_rerun_needs_no_network(layout, upstream, ref):
    ref = upstream.head("HEAD~1") if ref == "SHA" else ref
    first = fetch_one(layout, ref)
    upstream.path.rename(upstream.path.with_name("gone"))  # the remote disappears
    again = fetch_one(layout, ref)
    assert again == first
    # Even with the work dir wiped, the mirror in cache_dir is enough.
    shutil.rmtree(layout.root / "build")
    rebuilt = fetch_one(layout, ref)
    assert rebuilt.commit == first.commit and tree_head(rebuilt) == first.commit


def test_modified_tree_is_restored(layout, upstream):
    fetch_one(layout, "1.0.0")
    core = layout.root / "build/src/2025.2/demo/demo/core.py"
    core.write_text("tampered\n")
    fetch_one(layout, "1.0.0")
    assert "def greet" in core.read_text()


def test_unknown_ref(layout, upstream):
    with pytest.raises(FetchError, match="ref 'no-such-thing' is neither a branch nor a tag") as info:
        fetch_one(layout, "no-such-thing")
    assert "source-refs.yaml" in str(info.value)
    assert not (layout.root / "build" / "src" / "2025.2" / "demo").exists()


def test_unreachable_remote(layout, upstream):
    layout.settings_overrides["git_base"] = str(upstream.path.parent / "nowhere")
    with pytest.raises(FetchError, match="cannot query"):
        fetch_one(layout, "1.0.0")


def test_offline_without_mirror(layout, upstream):
    with pytest.raises(FetchError, match="--offline forbids fetching"):
        fetch_one(layout, "1.0.0", offline=True)


def test_versions_of_untagged_refs_follow_pbr(layout, upstream):
    assert fetch_one(layout, "stable/2025.2").version == "1.0.1.dev1"
    assert fetch_one(layout, upstream.head("HEAD")).version == "1.0.1.dev2"
    assert fetch_one(layout, "1.0.0").version == "1.0.0"


def test_version_needs_deeper_history_than_the_shallow_fetch(layout, upstream):
    run_git(upstream.path, "checkout", "-q", "-b", "long", "1.0.0")
    for i in range(60):
        upstream.write("counter", f"{i}\n")
        upstream.commit(f"Change {i}")
    record = fetch_one(layout, "long")
    assert record.version == "1.0.1.dev60"
    assert int(run_git(Path(record.tree), "rev-list", "--count", "HEAD")) == 1  # the work tree stays shallow


def test_pbr_dev_version():
    assert sources.pbr_dev_version("32.1.0", 0) == "32.1.0"
    assert sources.pbr_dev_version("32.1.0", 7) == "32.1.1.dev7"
