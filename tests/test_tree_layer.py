"""A patched tree's layer archive from a wheel, without an engine: its form, its byte code, bad wheels.

The byte code here is the host Python's; the runtime base's (``pipeline.image.bytecode``) is tested in test_images."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import marshal
import os
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from pipeline.core.errors import ImageBuildError
from pipeline.core.files import sha256_file
from pipeline.image import tree_layer
from pipeline.image.tree_wheel import TreeWheel

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


class HostByteCode:
    """The contract of ``bytecode.ByteCode`` (sources by image path -> their .pyc by image path), kept by the
    host's own Python; it notes what it was asked to compile."""

    image_id = "sha256:host"

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    def compiled(self, sources: dict[str, bytes]) -> dict[str, bytes]:
        self.asked.append(sorted(sources))
        out = {}
        for path, data in sources.items():
            try:
                code = compile(data, path, "exec", dont_inherit=True)
            except SyntaxError:
                continue
            folder, _, name = path.rpartition("/")
            out[f"{folder}/__pycache__/{name[:-3]}.{sys.implementation.cache_tag}.pyc"] = marshal.dumps(code)
        return out


FILES = {"tool/__init__.py": b"", "tool/cli.py": b"def main():\n    return 0\n", "single.py": b"X = 1\n",
         "tool-1.0.data/data/etc/tool/tool.conf": b"[DEFAULT]\n"}


def test_the_archive_is_the_install_at_its_image_paths_and_the_same_wheel_gives_the_same_bytes(tmp_path):
    source = wheel(tmp_path, FILES)
    tree_layer._make(source, "3.11", tmp_path / "a", HostByteCode())
    tree_layer._make(source, "3.11", tmp_path / "b", HostByteCode())
    assert (tmp_path / "a" / "layer.tar").read_bytes() == (tmp_path / "b" / "layer.tar").read_bytes()
    with tarfile.open(tmp_path / "a" / "layer.tar") as archive:
        members = {m.name: m for m in archive.getmembers()}
        content = {name: archive.extractfile(m).read() for name, m in members.items() if m.isfile()}
    tag = sys.implementation.cache_tag
    assert sorted(content) == sorted([
        f"{SITE}/single.py", f"{SITE}/tool/__init__.py", f"{SITE}/tool/cli.py",
        f"{SITE}/__pycache__/single.{tag}.pyc", f"{SITE}/tool/__pycache__/__init__.{tag}.pyc",
        f"{SITE}/tool/__pycache__/cli.{tag}.pyc",
        *(f"{SITE}/tool-1.0.dist-info/{n}" for n in ("INSTALLER", "METADATA", "RECORD", "REQUESTED", "WHEEL",
                                                      "entry_points.txt")),
        "var/lib/openstack/bin/tool-run", "var/lib/openstack/etc/tool/tool.conf", "etc/tool/tool.conf"])
    # the tree's configuration files are where its processes look for them too
    assert content["etc/tool/tool.conf"] == content["var/lib/openstack/etc/tool/tool.conf"] == b"[DEFAULT]\n"
    assert content["var/lib/openstack/bin/tool-run"].startswith(b"#!/var/lib/openstack/bin/python\n")
    # Modes carry the file type, as the engine writes them (the archive's sha256 is then the layer's diff ID).
    assert members["var/lib/openstack/bin/tool-run"].mode == 0o100755 and members[f"{SITE}/tool/cli.py"].mode == 0o100644
    assert members[f"{SITE}/tool/__pycache__/cli.{tag}.pyc"].mode == 0o100644 and members[f"{SITE}/tool/__pycache__"].isdir()
    assert members[f"{SITE}/tool"].mode == 0o40755 and {m.uname for m in members.values()} == {"root"}
    assert {(m.uid, m.gid, m.mtime) for m in members.values()} == {(0, 0, tree_layer.EPOCH)}
    assert {"var", "var/lib/openstack/bin", SITE, f"{SITE}/tool"} <= {n for n, m in members.items() if m.isdir()}
    layer = json.loads((tmp_path / "a" / "layer.json").read_text())
    assert layer["bytecode"] == 3 and layer["dist_info"] == "tool-1.0.dist-info"
    with tarfile.open(tmp_path / "a" / "metadata.tar") as archive:
        assert [m.name for m in archive.getmembers() if m.isfile()] == [f"{SITE}/tool-1.0.dist-info/METADATA",
                                                                         f"{SITE}/tool-1.0.dist-info/WHEEL"]


def test_only_the_modules_under_site_packages_are_compiled_and_one_that_does_not_compile_has_no_pyc(tmp_path):
    source = wheel(tmp_path, {**FILES, "tool/broken.py": b"def (:\n"})
    bytecode = HostByteCode()
    tree_layer._make(source, "3.11", tmp_path / "a", bytecode)
    assert bytecode.asked == [[f"/{SITE}/{name}" for name in ("single.py", "tool/__init__.py", "tool/broken.py",
                                                               "tool/cli.py")]]
    with tarfile.open(tmp_path / "a" / "layer.tar") as archive:
        names = archive.getnames()
    assert f"{SITE}/tool/broken.py" in names and not [n for n in names if n.startswith(f"{SITE}/tool/__pycache__/broken.")]
    assert json.loads((tmp_path / "a" / "layer.json").read_text())["bytecode"] == 3


def test_entries_come_in_the_engine_s_order_and_long_or_foreign_names_as_go_writes_them(tmp_path):
    """A directory, then what it holds, by name (``a/b`` before ``a-b``, which a sort of whole paths inverts);
    names too long for USTAR's 100 bytes in its 155-byte prefix, or in a PAX record when they cannot be split or
    are not ASCII; two zero blocks at the end and no padding beyond (the engine's diff ID hashes every byte)."""
    long_dir = "d" * 120
    deep = "/".join(["p" * 60] * 5)
    data = tree_layer._archive({"x/a/b": (b"1", False), "x/a-b": (b"", True), f"x/{long_dir}/f.py": (b"2", False),
                                "x/\u00e9.py": (b"3", False), f"x/{deep}/g": (b"4" * 700, False)})
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = [m.name for m in archive]
    assert names.index("x/a/b") < names.index("x/a-b") and f"x/{deep}/g" in names and "x/\u00e9.py" in names
    blocks = [data[i:i + 512] for i in range(0, len(data), 512)]
    assert data.endswith(bytes(1024)) and not data.endswith(bytes(1536))
    split = next(b for b in blocks if b.startswith(b"f.py\0"))
    assert split[345:].rstrip(b"\0").startswith(f"x/{long_dir}".encode())  # USTAR prefix: the last slash that fits
    assert any(b[156:157] == b"x" and b"PaxHeaders.0" in b[:100] for b in blocks)
    assert all(b[257:265] == b"ustar\x0000" for b in blocks if b[156:157] in (b"0", b"5", b"x"))


def test_a_damaged_archive_is_made_again_before_a_build_reads_it(tmp_path, capfd):
    """Same size, same mtime, other bytes: the hash recorded at write time tells; the archive is made again."""
    source = wheel(tmp_path, FILES)
    directory = tmp_path / "a"
    tree_layer._make(source, "3.11", directory, HostByteCode())
    good = (directory / "layer.tar").read_bytes()
    remade = []

    def remake():
        remade.append(True)
        shutil.rmtree(directory)
        tree_layer._make(source, "3.11", directory, HostByteCode())
        return tree_layer._cached(source, directory)

    layer = dataclasses.replace(tree_layer._cached(source, directory), remake=remake)
    assert tree_layer.read_verified(layer)["layer.tar"] == good and not remade
    stat = (directory / "layer.tar").stat()
    with (directory / "layer.tar").open("r+b") as handle:
        handle.seek(1024)
        handle.write(b"corrupt!" * 2)
    os.utime(directory / "layer.tar", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert tree_layer.read_verified(layer)["layer.tar"] == good and remade == [True]
    assert f"the cached layer archive {directory / 'layer.tar'} of tool does not match the sha256" in capfd.readouterr().err
    (directory / "metadata.tar").write_bytes(b"cut")
    assert tree_layer.read_verified(layer)["metadata.tar"] == (directory / "metadata.tar").read_bytes() != b"cut"
    assert tree_layer._cached(source, tmp_path / "absent") is None


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
        tree_layer._make(source, "3.11", tmp_path / "out", HostByteCode())
    assert error.value.exit_code == 42
    assert "wheel tool: tool-1.0-py3-none-any.whl cannot be installed into the image" in error.value.message
    assert expected in error.value.message and str(tmp_path) not in error.value.message
