"""invoke hotpatch on a real engine: a running container of a small service image, patched and put back."""

from __future__ import annotations

import shlex
import subprocess
import uuid

import docker
import pytest
from conftest import Layout, Upstream, invoke, make_patch, run_git

from pipeline import build as build_stage

pytestmark = [pytest.mark.docker, pytest.mark.network]

SITE = "/var/lib/openstack/lib/python3.11/site-packages"


@pytest.fixture(scope="module")
def engine():
    return docker.from_env()


@pytest.fixture(scope="module")
def demo(tmp_path_factory, engine):
    """The demo service of 2025.2 (tag 2.0.1) built without patches, and a running container of it."""
    base = tmp_path_factory.mktemp("hotpatch")
    upstream = Upstream(base / "upstream")
    layout = Layout(base / "project", upstream.path.parent)
    layout.release("2025.2", {"demo": "2.0.1"})
    layout.release("2025.1", {"demo": "2.0.1"})
    report = build_stage.build(layout.project(), "2025.2", ["demo"])
    if report.first_error():
        raise report.first_error()
    image = report.image("demo").record.tags[0]
    container = engine.containers.run(image, ["sleep", "3600"], detach=True, network_mode="none",
                                      name=f"hotpatch-test-{uuid.uuid4().hex[:8]}")
    yield layout, upstream, container
    container.remove(force=True)


def sh(container, script: str) -> str:
    _code, out = container.exec_run(["sh", "-c", script])
    return out.decode()


def patch_demo(upstream: Upstream, repo_layout: Layout) -> None:
    def edit(repo):
        core = repo / "demo" / "core.py"
        core.write_text(core.read_text().replace('"hello, "', '"hotpatched, "'))
        (repo / "demo" / "extra.py").write_text("EXTRA = 42\n")
        (repo / "README").write_text("not installed\n")

    run_git(upstream.path, "checkout", "-q", "2.0.1")
    try:
        repo_layout.add_patch("demo", "2025.2", "0001-Hotfix.patch", make_patch(upstream.path, edit, "Hotfix greet"))
    finally:
        run_git(upstream.path, "checkout", "-q", "master")


def test_hotpatch_copies_the_changed_files_and_the_printed_commands_undo_it(demo):
    layout, upstream, container = demo
    stat_before = sh(container, f"stat -c '%U %a' {SITE}/demo/core.py")
    original = sh(container, f"cat {SITE}/demo/core.py")
    patch_demo(upstream, layout)

    result = invoke(layout, "hotpatch", "--release", "2025.2", "--service", "demo", "--container", container.name)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line.split()[2] for line in result.stdout.splitlines() if line.startswith("demo ")}
    assert rows == {"demo/core.py": "replaced", "demo/extra.py": "added", "README": "not"}  # "not installed"
    check = "import demo.core, demo.extra; print(demo.core.greet('x'), demo.extra.EXTRA)"
    assert sh(container, f"python -c \"{check}\"").strip() == "hotpatched, x 42"
    assert sh(container, f"stat -c '%U %a' {SITE}/demo/core.py") == stat_before

    again = invoke(layout, "hotpatch", "--release", "2025.2", "--service", "demo", "--container", container.name)
    assert again.returncode == 0 and "earlier hotpatch" in again.stdout
    assert "unchanged" in again.stdout and "docker cp -" in again.stdout  # the way back is still shown

    commands = [line.strip() for line in again.stdout.splitlines() if line.strip().startswith("docker ")]
    for command in commands[:-1]:  # the last one, docker restart, is for the processes
        subprocess.run(command, shell=True, check=True, capture_output=True)
    assert sh(container, f"cat {SITE}/demo/core.py") == original
    assert sh(container, f"ls {SITE}/demo/extra.py 2>&1").strip().endswith("No such file or directory")
    assert sh(container, f"stat -c '%U %a' {SITE}/demo/core.py") == stat_before
    assert any(shlex.split(c)[:2] == ["docker", "exec"] for c in commands)


def test_refuses_another_release_version_or_container(demo, engine, tmp_path):
    layout, upstream, container = demo
    before = sh(container, f"md5sum {SITE}/demo/core.py")

    other_release = invoke(layout, "hotpatch", "--release", "2025.1", "--service", "demo", "--container", container.name)
    assert other_release.returncode == 47, other_release.stderr
    assert f"container {container.name} runs demo of release 2025.2, not demo of 2025.1" in other_release.stderr

    moved = Layout(tmp_path / "moved", upstream.path.parent)
    moved.settings_overrides["cache_dir"] = layout.settings_dict()["cache_dir"]
    moved.release("2025.2", {"demo": "2.0.0"})
    patch_demo(upstream, moved)
    older = invoke(moved, "hotpatch", "--release", "2025.2", "--service", "demo", "--container", container.name)
    assert older.returncode == 47 and "has demo 2.0.1, the release's ref gives 2.0.0" in older.stderr

    missing = invoke(layout, "hotpatch", "--release", "2025.2", "--service", "demo", "--container", "no-such-container-x")
    assert missing.returncode == 47 and "no container named no-such-container-x" in missing.stderr

    stopped = engine.containers.create(container.image.id, ["sleep", "1"], network_mode="none",
                                       name=f"hotpatch-stopped-{uuid.uuid4().hex[:8]}")
    try:
        result = invoke(layout, "hotpatch", "--release", "2025.2", "--service", "demo", "--container", stopped.name)
        assert result.returncode == 47 and "is not running (created)" in result.stderr
    finally:
        stopped.remove(force=True)

    unknown = invoke(layout, "hotpatch", "--release", "2025.2", "--service", "nope", "--container", container.name)
    assert unknown.returncode == 4
    for result in (other_release, older, missing, unknown):
        assert "Traceback" not in result.stderr
    assert sh(container, f"md5sum {SITE}/demo/core.py") == before
