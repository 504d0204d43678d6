"""invoke export: reproducible archives of the prepared trees, usable by pip without .git."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import Layout, invoke, make_patch, run_git

from pipeline.patches import export as stage

SETUP_CFG = "[metadata]\nname = demo-lib\nsummary = demo\n\n[files]\npackages =\n    demo_lib\n"


@pytest.fixture
def pbr_upstream(tmp_path: Path) -> Path:
    """A pbr project as OpenStack's are: setup.cfg metadata, version from the git tag."""
    repo = tmp_path / "upstream" / "demo-lib"
    (repo / "demo_lib").mkdir(parents=True)
    (repo / "setup.py").write_text("import setuptools\n\nsetuptools.setup(setup_requires=['pbr'], pbr=True)\n")
    (repo / "setup.cfg").write_text(SETUP_CFG)
    (repo / "pyproject.toml").write_text('[build-system]\nrequires = ["pbr>=6.0.0", "setuptools>=64.0.0"]\n'
                                         'build-backend = "pbr.build"\n')
    (repo / "README.rst").write_text("demo\n")
    (repo / "demo_lib" / "__init__.py").write_text("VALUE = 1\n")
    (repo / "run.sh").write_text("#!/bin/sh\necho run\n")
    (repo / "run.sh").chmod(0o755)
    run_git(repo, "init", "-q")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "Initial import")
    run_git(repo, "tag", "-a", "-m", "1.2.0", "1.2.0")
    return repo


def add_data_file(repo: Path) -> None:
    (repo / "demo_lib" / "data").mkdir()
    (repo / "demo_lib" / "data" / "schema.json").write_text('{"new": true}\n')
    (repo / "demo_lib" / "__init__.py").write_text("VALUE = 2\n")


@pytest.fixture
def exported_layout(tmp_path, pbr_upstream) -> Layout:
    layout = Layout(tmp_path / "project", pbr_upstream.parent)
    layout.release("2025.2", {"demo-lib": "1.2.0"})
    layout.add_patch("demo-lib", "2025.2", "0001-Add-a-schema.patch",
                     make_patch(pbr_upstream, add_data_file, "Add a schema\n\nChange-Id: I" + "2" * 40))
    return layout


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def test_archive_is_sdist_shaped_and_reproducible(exported_layout, tmp_path):
    result = invoke(exported_layout, "export", "--release", "2025.2")
    assert result.returncode == 0, result.stderr
    out = exported_layout.root / "build" / "export" / "2025.2"
    (archive,) = out.glob("*.tar.gz")
    head = run_git(exported_layout.root / "build" / "patched" / "2025.2" / "demo-lib", "rev-parse", "HEAD")
    assert archive.name == f"demo-lib-1.2.0-p1-{head[:12]}.tar.gz"
    assert (out / "SHA256SUMS").read_text() == f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  {archive.name}\n"
    assert archive.name in result.stdout

    raw = archive.read_bytes()
    assert raw[3] & 0x08 == 0 and raw[4:8] == b"\0\0\0\0"  # gzip: no file name, no timestamp
    entries = members(archive)
    names = [m.name for m in entries]
    top = archive.name.removesuffix(".tar.gz")
    assert names == sorted(names) and names[0] == top
    assert not any("/.git" in n for n in names)
    commit_date = int(run_git(exported_layout.root / "build" / "patched" / "2025.2" / "demo-lib", "log", "-1", "--format=%ct"))
    assert {m.mtime for m in entries} == {commit_date}
    assert {(m.uid, m.gid, m.uname, m.gname) for m in entries} == {(0, 0, "", "")}
    modes = {m.name.removeprefix(f"{top}/"): m.mode for m in entries}
    assert modes["run.sh"] == 0o755 and modes["setup.py"] == 0o644
    with tarfile.open(archive) as tar:
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read().decode()
        sources = tar.extractfile(f"{top}/demo_lib.egg-info/SOURCES.txt").read().decode().splitlines()
        assert tar.extractfile(f"{top}/demo_lib/__init__.py").read() == b"VALUE = 2\n"
    assert "Name: demo-lib\nVersion: 1.2.0\n" in pkg_info
    assert "demo_lib/data/schema.json" in sources and "PKG-INFO" in sources

    # Same inputs, same bytes: again after removing the archive and its stamp, and from another work directory.
    shutil.rmtree(out)
    shutil.rmtree(exported_layout.root / "build" / ".stamps" / "export")
    assert invoke(exported_layout, "export", "--release", "2025.2").returncode == 0
    assert archive.read_bytes() == raw
    exported_layout.settings_overrides["workdir"] = str(tmp_path / "elsewhere")
    assert invoke(exported_layout, "export", "--release", "2025.2").returncode == 0
    assert (tmp_path / "elsewhere" / "export" / "2025.2" / archive.name).read_bytes() == raw


def test_rerun_is_up_to_date_and_a_changed_series_replaces_the_archive(exported_layout, pbr_upstream):
    project = exported_layout.project()
    (first,) = stage.export(project, "2025.2")
    (again,) = stage.export(project, "2025.2")
    assert (first.action, again.action) == ("written", "up to date") and again.sha256 == first.sha256
    exported_layout.add_patch("demo-lib", "2025.2", "0002-More.patch", make_patch(
        pbr_upstream, lambda r: (r / "README.rst").write_text("more\n"), "More"))
    (second,) = stage.export(exported_layout.project(), "2025.2")
    assert second.patches == 2 and second.path.name.startswith("demo-lib-1.2.0-p2-")
    out = second.path.parent
    assert sorted(p.name for p in out.glob("*.tar.gz")) == [second.path.name]
    assert (out / "SHA256SUMS").read_text() == f"{second.sha256}  {second.path.name}\n"


def test_non_pbr_tree_is_archived_as_it_is(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    (exported,) = stage.export(layout.project(), "2025.2")
    names = {m.name.split("/", 1)[1] for m in members(exported.path) if m.isfile()}
    files = set(run_git(layout.root / "build" / "patched" / "2025.2" / "demo", "ls-files").splitlines())
    assert names == files  # no metadata added, nothing missing


def test_unknown_component(exported_layout):
    result = invoke(exported_layout, "export", "--release", "2025.2", "--component", "nope")
    assert result.returncode == 4 and "unknown component 'nope'" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.network
def test_pip_builds_the_archive_with_the_files_patches_add(exported_layout, tmp_path):
    (exported,) = stage.export(exported_layout.project(), "2025.2")
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(exported.path)],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **_pip_env()})
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("*.whl")
    assert wheel.name.startswith("demo_lib-1.2.0-")  # the version from PKG-INFO, not 0.0.0 or a dev version
    with zipfile.ZipFile(wheel) as whl:
        assert "demo_lib/data/schema.json" in whl.namelist()  # listed in SOURCES.txt: pbr has no git here


def _pip_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "SSL_", "HTTP", "HTTPS", "NO_PROXY", "HOME"))}



def test_an_sdist_tree_keeps_its_pkg_info_and_gets_a_complete_sources_list(tmp_path, pbr_upstream):
    # What sources.py makes of an sdist: a one-commit tree with PKG-INFO and the sdist's egg-info.
    (pbr_upstream / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: demo-lib\nVersion: 1.2.0\nSummary: sdist\n")
    (pbr_upstream / "demo_lib.egg-info").mkdir()
    (pbr_upstream / "demo_lib.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: demo-lib\n")
    (pbr_upstream / "demo_lib.egg-info" / "SOURCES.txt").write_text("setup.py\ndemo_lib/__init__.py\n")
    run_git(pbr_upstream, "add", "-A")
    run_git(pbr_upstream, "commit", "-q", "-m", "sdist metadata")
    run_git(pbr_upstream, "tag", "-f", "-a", "-m", "1.2.0", "1.2.0")
    layout = Layout(tmp_path / "project", pbr_upstream.parent)
    layout.release("2025.2", {"demo-lib": "1.2.0"})
    layout.add_patch("demo-lib", "2025.2", "0001-Add-a-schema.patch", make_patch(pbr_upstream, add_data_file, "Add a schema"))
    (exported,) = stage.export(layout.project(), "2025.2")
    top = exported.path.name.removesuffix(".tar.gz")
    with tarfile.open(exported.path) as tar:
        assert tar.extractfile(f"{top}/PKG-INFO").read().decode().endswith("Summary: sdist\n")
        sources = tar.extractfile(f"{top}/demo_lib.egg-info/SOURCES.txt").read().decode().splitlines()
    assert {"demo_lib/data/schema.json", "README.rst", "demo_lib.egg-info/SOURCES.txt"} <= set(sources)
    assert sources == sorted(sources)
