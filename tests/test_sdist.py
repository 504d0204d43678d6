"""sdist source mode: a local PEP 503 index on loopback (with basic auth), and real sdists from PyPI."""

from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import json
import subprocess
import threading

import pytest
from conftest import REPO_ROOT, make_patch, run_git

from pipeline.core import locks
from pipeline.core.errors import CacheCorruptError, FetchError, IntegrityError
from pipeline.patches import series
from pipeline.sources import fetch as sources

USER, PASSWORD = "builder", "Sup3r-s3cret"


class AuthHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.path.startswith("/private/") and self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.end_headers()
            return
        self.path = self.path.replace("/private/", "/", 1)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def index(tmp_path, upstream):
    """tmp/index on loopback: demo-1.0.0.tar.gz (a real archive of the upstream tag, with PKG-INFO)."""
    root = tmp_path / "index"
    (root / "simple" / "demo").mkdir(parents=True)
    (root / "files").mkdir()
    archive = root / "files" / "demo-1.0.0.tar.gz"
    subprocess.run(["git", "archive", "--format=tar.gz", "--prefix=demo-1.0.0/",
                    "--add-virtual-file=demo-1.0.0/PKG-INFO:Metadata-Version: 2.1\nName: demo\nVersion: 1.0.0\n",
                    "-o", str(archive), "1.0.0"], cwd=upstream.path, check=True)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()

    def publish(sha: str) -> None:
        (root / "simple" / "demo" / "index.html").write_text(
            f'<html><body><a href="../../files/demo-1.0.0.tar.gz#sha256={sha}">demo-1.0.0.tar.gz</a></body></html>')

    publish(digest)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(AuthHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.publish = publish
    server.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.private = f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_address[1]}/private/simple"
    yield server
    server.shutdown()


def fetch(layout, **settings):
    project = layout.project(**settings)
    with locks.hold(project.layout.lock("2025.2"), "test"):
        return sources.fetch(project, "2025.2")


def test_sdist_from_an_index_with_credentials(layout, upstream, index):
    layout.settings_overrides.update(source_mode="sdist", index_url=index.private)
    layout.release("2025.2", {"demo": "1.0.0"})
    record = fetch(layout)["demo"]
    assert (record.method, record.kind, record.version) == ("sdist", "tag", "1.0.0")
    assert record.origin.endswith("/files/demo-1.0.0.tar.gz") and PASSWORD not in record.origin
    tree = layout.root / "build" / record.tree
    assert run_git(tree, "describe", "--tags") == "1.0.0" and run_git(tree, "status", "--porcelain") == ""
    # A patch that adds a file: tracked by git, so pbr's file list includes it.
    layout.add_patch("demo", "2025.2", "0001-add.patch",
                     make_patch(upstream.path, lambda r: (r / "demo" / "new.py").write_text("X = 1\n"), "Add new.py"))
    project = layout.project()
    with locks.hold(project.layout.lock("2025.2"), "test"):
        (prepared,) = series.patch(project, "2025.2")
    assert "demo/new.py" in run_git(layout.root / "build" / prepared.tree, "ls-files").splitlines()
    for path in [*(layout.root / "build").rglob("*.json"), *(layout.root.parent / "cache").rglob("*.json")]:
        assert PASSWORD not in path.read_text(), path
    index.shutdown()
    assert fetch(layout)["demo"] == record  # no network on a rerun


def test_hash_mismatch(layout, index):
    index.publish("0" * 64)
    layout.settings_overrides.update(source_mode="sdist", index_url=index.url)
    layout.release("2025.2", {"demo": "1.0.0"})
    with pytest.raises(IntegrityError, match=r"sha256 is [0-9a-f]{64}, the index publishes 0000") as info:
        fetch(layout)
    assert info.value.exit_code == 11
    assert not (layout.root / "build" / "src" / "2025.2" / "demo").exists()


def test_corrupt_cached_sdist_is_downloaded_again(layout, index, capfd):
    layout.settings_overrides.update(source_mode="sdist", index_url=index.url)
    layout.release("2025.2", {"demo": "1.0.0"})
    first = fetch(layout)["demo"]
    cached = layout.root.parent / "cache" / "sdist" / "demo-1.0.0.tar.gz"
    cached.write_bytes(cached.read_bytes()[:100])
    (layout.root / "build" / ".stamps" / "fetch" / "2025.2" / "demo.json").unlink()
    with pytest.raises(CacheCorruptError, match="is corrupt"):
        fetch(layout, offline=True)
    assert fetch(layout)["demo"].commit == first.commit
    assert "downloading it again" in capfd.readouterr().err


def test_auto_mode_falls_back_to_git(layout, upstream, index):
    layout.settings_overrides.update(source_mode="auto", index_url=index.url, repos={"demo2": str(upstream.path)})
    layout.release("2025.2", {"demo": "1.0.0", "demo2": "stable/2.0"})
    records = fetch(layout)
    assert records["demo"].method == "sdist" and records["demo2"].method == "git"


def test_wrong_credentials_are_not_shown(layout, index):
    layout.settings_overrides.update(source_mode="sdist", index_url=index.private.replace(PASSWORD, "wrong-pass"))
    layout.release("2025.2", {"demo": "1.0.0"})
    with pytest.raises(FetchError) as info:
        fetch(layout)
    assert "HTTP 401" in str(info.value) and "wrong-pass" not in str(info.value)


@pytest.mark.network
def test_real_keystone_sdist_and_the_shipped_series(layout):
    layout.settings_overrides.update(source_mode="auto", index_url="https://pypi.org/simple")
    layout.release("2025.2", {"keystone": "28.0.0"})
    record = fetch(layout)["keystone"]
    assert record.method == "sdist" and record.version == "28.0.0"
    assert record.sdist_sha256 == "53bd2332fa095836a9f16015dbf061ec202c0b4c9a392138be508272699ebd88"
    tree = layout.root / "build" / record.tree
    pbr = json.loads(next(tree.glob("*.egg-info/pbr.json")).read_text())
    assert record.upstream_revision == pbr["git_version"]
    for patch in sorted((REPO_ROOT / "patches" / "keystone" / "2025.2").glob("*.patch")):
        layout.add_patch("keystone", "2025.2", patch.name, patch.read_bytes())
    project = layout.project()
    with locks.hold(project.layout.lock("2025.2"), "test"):
        (prepared,) = series.patch(project, "2025.2")
    assert [p.subject for p in prepared.patches][-1] == \
        "Preserve expires_at when rescoping federated tokens (CVE-2026-44394)"
    assert "secrets.SystemRandom()" in (layout.root / "build" / prepared.tree / "keystone/oauth1/backends/sql.py").read_text()
