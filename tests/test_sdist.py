"""sdist source mode: a local PEP 503 index on loopback, and the real keystone sdist from PyPI."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import subprocess
import threading
from pathlib import Path

import pytest

from pipeline import patches, sources
from pipeline.errors import FetchError, IntegrityError

from conftest import make_patch, run_git


@pytest.fixture
def index(tmp_path, upstream):
    """Serve tmp/index over HTTP on loopback with demo-1.0.0.tar.gz made from the upstream tag."""
    root = tmp_path / "index"
    (root / "simple" / "demo").mkdir(parents=True)
    (root / "files").mkdir()
    archive = root / "files" / "demo-1.0.0.tar.gz"
    subprocess.run(["git", "archive", "--format=tar.gz", "--prefix=demo-1.0.0/", "-o", str(archive), "1.0.0"],
                   cwd=upstream.path, check=True)
    # A pbr-built sdist records the upstream revision in pbr.json.
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()

    def publish(sha: str) -> None:
        (root / "simple" / "demo" / "index.html").write_text(
            f'<html><body><a href="../../files/demo-1.0.0.tar.gz#sha256={sha}">demo-1.0.0.tar.gz</a></body></html>')

    publish(digest)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.publish = publish
    server.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    yield server
    server.shutdown()


def test_sdist_from_local_index(layout, upstream, index):
    layout.settings_overrides.update(source_mode="sdist", index_url=index.url)
    layout.release("2025.2", {"demo": "1.0.0"})
    record = sources.fetch(layout.project(), "2025.2")["demo"]
    assert (record.method, record.kind, record.version) == ("sdist", "tag", "1.0.0")
    assert record.origin.endswith("/files/demo-1.0.0.tar.gz") and len(record.sdist_sha256) == 64
    tree = Path(record.tree)
    assert (tree / "demo" / "core.py").exists()
    assert run_git(tree, "describe", "--tags") == "1.0.0"  # pbr's version
    assert run_git(tree, "status", "--porcelain") == ""
    # A patch that adds a file: tracked by git, so pbr's file list includes it.
    layout.add_patch("demo", "2025.2", "0001-add.patch",
                     make_patch(upstream.path, lambda r: (r / "demo" / "new.py").write_text("X = 1\n"), "Add new.py"))
    (prepared,) = patches.patch(layout.project(), "2025.2")
    assert "demo/new.py" in run_git(Path(prepared.tree), "ls-files").splitlines()
    # Rerun with the index gone: no network needed.
    index.shutdown()
    again = sources.fetch(layout.project(), "2025.2")["demo"]
    assert again == record


def test_sdist_hash_mismatch(layout, index):
    index.publish("0" * 64)
    layout.settings_overrides.update(source_mode="sdist", index_url=index.url)
    layout.release("2025.2", {"demo": "1.0.0"})
    with pytest.raises(IntegrityError, match="sha256 is [0-9a-f]{64}, the index publishes 0000") as info:
        sources.fetch(layout.project(), "2025.2")
    assert info.value.exit_code == IntegrityError.exit_code
    assert not (layout.root / "build" / "src" / "2025.2" / "demo").exists()


def test_auto_mode_falls_back_to_git(layout, upstream, index):
    layout.settings_overrides.update(source_mode="auto", index_url=index.url)
    layout.release("2025.2", {"demo": "1.0.0", "demo2": "stable/2025.2"})
    layout.settings_overrides["repos"] = {"demo2": str(upstream.path)}
    records = sources.fetch(layout.project(), "2025.2")
    assert records["demo"].method == "sdist"
    assert records["demo2"].method == "git"  # a branch is never on the index


def test_sdist_mode_missing_version(layout, index):
    layout.settings_overrides.update(source_mode="sdist", index_url=index.url)
    layout.release("2025.2", {"demo": "9.9.9"})
    with pytest.raises(FetchError, match="no sdist of demo 9.9.9"):
        sources.fetch(layout.project(), "2025.2")


@pytest.mark.network
def test_real_keystone_sdist_from_pypi(layout):
    layout.settings_overrides.update(source_mode="auto", index_url="https://pypi.org/simple")
    layout.release("2025.2", {"keystone": "28.0.0"})
    project = layout.project()
    record = sources.fetch(project, "2025.2")["keystone"]
    assert record.method == "sdist"
    assert record.sdist_sha256 == "53bd2332fa095836a9f16015dbf061ec202c0b4c9a392138be508272699ebd88"
    tree = Path(record.tree)
    pbr = json.loads(next(tree.glob("*.egg-info/pbr.json")).read_text())
    assert record.upstream_revision == pbr["git_version"]
    assert run_git(tree, "describe", "--tags") == "28.0.0"
    # The shipped keystone series applies to the real sdist.
    series_dir = Path(__file__).resolve().parent.parent / "patches" / "keystone" / "2025.2"
    for patch in sorted(series_dir.glob("*.patch")):
        layout.add_patch("keystone", "2025.2", patch.name, patch.read_text())
    (prepared,) = patches.patch(layout.project(), "2025.2")
    assert [p.subject for p in prepared.patches] == [
        "Replace the random library with secrets in oauth1",
        "fix ldap 'enabled' setting not interpreted as boolean",
        "Preserve expires_at when rescoping federated tokens (CVE-2026-44394)",
    ]
    assert "system_random = secrets.SystemRandom()" in (Path(prepared.tree) / "keystone/oauth1/backends/sql.py").read_text()
