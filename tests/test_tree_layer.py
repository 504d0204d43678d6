"""A patched tree's layer archive from a wheel, without an engine: its form, its byte-code step, bad wheels."""

from __future__ import annotations

import base64
import hashlib
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline import tree_layer
from pipeline.errors import ImageBuildError
from pipeline.files import sha256_file
from pipeline.tree_wheel import TreeWheel

SITE = "var/lib/openstack/lib/python3.11/site-packages"


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    return f"{name},sha256={digest},{len(data)}"


def wheel(tmp_path: Path, files: dict[str, bytes], record: str | None = None) -> TreeWheel:
    """A wheel of the distribution `tool` 1.0 with ``files`` besides its dist-info (RECORD made to match)."""
    dist_info = {
        "tool-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tool\nVersion: 1.0\n",
        "tool-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "tool-1.0.dist-info/entry_points.txt": b"[console_scripts]\ntool-run = tool.cli:main\n",
    }
    entries = {**files, **dist_info}
    path = tmp_path / "tool-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        lines = [record_line(n, d) for n, d in entries.items()] + ["tool-1.0.dist-info/RECORD,,"]
        archive.writestr("tool-1.0.dist-info/RECORD", record if record is not None else "\n".join(lines) + "\n")
    return TreeWheel("tool", path, sha256_file(path))


FILES = {"tool/__init__.py": b"", "tool/cli.py": b"def main():\n    return 0\n", "single.py": b"X = 1\n",
         "tool-1.0.data/data/etc/tool/tool.conf": b"[DEFAULT]\n"}


def test_the_archive_is_the_install_at_its_image_paths_and_the_same_wheel_gives_the_same_bytes(tmp_path):
    source = wheel(tmp_path, FILES)
    tree_layer._make(source, "3.11", tmp_path / "a")
    tree_layer._make(source, "3.11", tmp_path / "b")
    assert (tmp_path / "a" / "layer.tar").read_bytes() == (tmp_path / "b" / "layer.tar").read_bytes()
    with tarfile.open(tmp_path / "a" / "layer.tar") as archive:
        members = {m.name: m for m in archive.getmembers()}
        content = {name: archive.extractfile(m).read() for name, m in members.items() if m.isfile()}
    assert sorted(content) == sorted([
        f"{SITE}/single.py", f"{SITE}/tool/__init__.py", f"{SITE}/tool/cli.py",
        *(f"{SITE}/tool-1.0.dist-info/{n}" for n in ("INSTALLER", "METADATA", "RECORD", "REQUESTED", "WHEEL",
                                                      "entry_points.txt")),
        "var/lib/openstack/bin/tool-run", "var/lib/openstack/etc/tool/tool.conf"])
    assert content["var/lib/openstack/bin/tool-run"].startswith(b"#!/var/lib/openstack/bin/python\n")
    assert members["var/lib/openstack/bin/tool-run"].mode == 0o755 and members[f"{SITE}/tool/cli.py"].mode == 0o644
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, tree_layer.EPOCH)}
    assert {"var", "var/lib/openstack/bin", SITE, f"{SITE}/tool"} <= {n for n, m in members.items() if m.isdir()}
    layer = json.loads((tmp_path / "a" / "layer.json").read_text())
    assert layer["compile"] == ["single.py", "tool"] and layer["dist_info"] == "tool-1.0.dist-info"
    with tarfile.open(tmp_path / "a" / "metadata.tar") as archive:
        assert [m.name for m in archive.getmembers() if m.isfile()] == [f"{SITE}/tool-1.0.dist-info/METADATA",
                                                                         f"{SITE}/tool-1.0.dist-info/WHEEL"]


def test_the_byte_code_step_names_the_image_python_and_every_module_to_compile(tmp_path):
    source = wheel(tmp_path, FILES)
    tree_layer._make(source, "3.11", tmp_path / "a")
    layer = tree_layer._cached(source, tmp_path / "a", "3.11")
    assert layer is not None
    step = layer.bytecode_instruction()
    assert step.startswith("RUN [")
    command = json.loads(step[4:])
    assert command[:5] == ["env", "PYTHONHASHSEED=0", "TMPDIR=/dev/shm", "/var/lib/openstack/bin/python", "-S"]
    assert command[-3:] == [str(tree_layer.EPOCH), f"/{SITE}/single.py", f"/{SITE}/tool"]


def test_a_damaged_or_rewritten_archive_is_not_used(tmp_path):
    source = wheel(tmp_path, FILES)
    tree_layer._make(source, "3.11", tmp_path / "a")
    assert tree_layer._cached(source, tmp_path / "a", "3.11") is not None
    (tmp_path / "a" / "metadata.tar").write_bytes(b"damaged")
    assert tree_layer._cached(source, tmp_path / "a", "3.11") is None


@pytest.mark.parametrize("case, expected", [
    ("record", "hash / size of tool/cli.py didn't match RECORD"),
    ("zip", "File is not a zip file"),
])
def test_a_wheel_that_cannot_be_installed_is_a_clear_error(tmp_path, case, expected):
    if case == "record":
        source = wheel(tmp_path, FILES, record=record_line("tool/cli.py", b"other") + "\n")
    else:
        (tmp_path / "tool-1.0-py3-none-any.whl").write_bytes(b"not a zip")
        source = TreeWheel("tool", tmp_path / "tool-1.0-py3-none-any.whl", "")
    with pytest.raises(ImageBuildError) as error:
        tree_layer._make(source, "3.11", tmp_path / "out")
    assert error.value.exit_code == 42
    assert "wheel tool: tool-1.0-py3-none-any.whl cannot be installed into the image" in error.value.message
    assert expected in error.value.message and str(tmp_path) not in error.value.message
