"""Versions follow pbr exactly, for every ref kind, online and offline (pbr itself is the oracle)."""

from __future__ import annotations

import pytest
from conftest import pbr_reference_version

from pipeline.core import locks
from pipeline.core.errors import FetchError
from pipeline.sources import fetch as sources
from pipeline.sources import versions


def fetch_one(layout, ref, **settings):
    layout.release("2025.2", {"demo": ref})
    project = layout.project(**settings)
    with locks.hold(project.layout.lock("2025.2"), "test"):
        return sources.fetch(project, "2025.2")["demo"]


@pytest.mark.parametrize("ref", ["master", "stable/2.0", "stable/1.0", "2.0.0.0rc1", "2.0.1", "1.0-eom"])
def test_version_is_pbrs(layout, upstream, ref):
    record = fetch_one(layout, ref)
    assert record.version == pbr_reference_version(upstream.path, ref)


def test_prerelease_tag_shapes(layout, upstream):
    # The stable branch is cut at 2.0.0.0rc1: master after it is 2.0.0.0rc2.dev<N>, as pbr says.
    assert fetch_one(layout, "master").version == "2.0.0.0rc2.dev2"
    assert versions.tag_version("32.0.0.0rc1") == "32.0.0.0rc1"
    assert versions.tag_version("2025.1-eom") is None and not versions.is_version_tag("2025.1-eom")
    for shape in ("1.0.0.0b2", "1.0.0a1", "28.0.0", "2025.1-eol", "stable", "v1.0"):
        versions.tag_version(shape)  # never raises, whatever the shape


def test_short_sha_of_an_old_commit_after_a_shallow_tag_fetch(layout, upstream):
    fetch_one(layout, "2.0.1")  # a depth-1 tag fetch makes the mirror shallow
    short = upstream.add_sub[:10]
    record = fetch_one(layout, short)
    assert record.commit == upstream.add_sub
    assert record.version == pbr_reference_version(upstream.path, upstream.add_sub)


def test_offline_gives_the_same_version(layout, upstream):
    online = fetch_one(layout, "master")
    offline = fetch_one(layout, "master", offline=True)
    assert (offline.commit, offline.version) == (online.commit, online.version)


def test_semver_footer(layout, upstream):
    upstream.write("demo/extra.py", "X = 1\n")
    upstream.commit("Add a feature\n\nSem-Ver: feature")
    record = fetch_one(layout, "master")
    assert record.version == pbr_reference_version(upstream.path, "master") == "2.1.0.dev3"


def test_offline_without_mirror_is_a_clear_error(layout, upstream):
    with pytest.raises(FetchError, match="offline mode forbids fetching"):
        fetch_one(layout, "master", offline=True)
