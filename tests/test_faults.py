"""The project's fault corpus, on real processes, real git repositories and a real Docker engine.

Each case does to the tool what a user, a full disk, a killed run or a
damaged cache does, and asserts three things: the exit code (README's
table), the message (one `error:` naming the file or path and what to do,
never a traceback or a secret), and the state left behind (the next run is
right; nothing half-made or corrupt stays, or reaches an image).

Sections: kills and concurrent runs; damaged caches; settings, flags and
inputs; the disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Layout, Upstream, invoke, make_patch, run_git

from pipeline.core.files import STAGING_PREFIX, sha256_file


def expect(result: subprocess.CompletedProcess, code: int, *messages: str) -> None:
    """The run ended with ``code`` and said each of ``messages`` on stderr, with no traceback or internal error;
    a failure is one `error:` line."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    for message in messages:
        assert message in result.stderr, (message, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-3000:]
    if code:
        assert [line.startswith("error: ") for line in result.stderr.splitlines()].count(True) == 1, result.stderr[-3000:]


# --- kills and concurrent runs: the next run is right, nothing a killed run left behind stays --------------
def start(layout: Layout, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(["invoke", "-r", str(REPO_ROOT), *args], env={**layout.invoke_env(), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_when(proc: subprocess.Popen, condition, timeout: float = 120) -> bool:
    """SIGKILL the process group as soon as ``condition()`` holds; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the condition never held")


def staging_in(directory: Path):
    return lambda: directory.is_dir() and any(p.name.startswith(STAGING_PREFIX) for p in directory.iterdir())


@pytest.fixture
def heavy(tmp_path):
    """An upstream whose fetch and checkout take long enough to be interrupted (incompressible data)."""
    upstream = Upstream(tmp_path / "upstream", "heavy")
    for i in range(40):
        upstream.write(f"heavy/data/blob{i}.bin", os.urandom(400_000).hex())
    upstream.commit("Big data")
    upstream.tag("3.0.0")
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"heavy": "3.0.0"}, services=[])
    return upstream, layout


def no_staging_left(root: Path) -> bool:
    return not list(root.rglob(f"{STAGING_PREFIX}*"))


def test_kill_during_fetch_then_rerun(heavy):
    upstream, layout = heavy
    mirror_dir = layout.root.parent / "cache" / "git"
    killed = kill_when(start(layout, "fetch", "--release", "2025.2"),
                       lambda: mirror_dir.is_dir() and any((p / "shallow.lock").exists() or p.name.startswith(STAGING_PREFIX)
                                                          for p in mirror_dir.iterdir()))
    assert killed
    src = layout.root / "build" / "src" / "2025.2"
    result = invoke(layout, "fetch", "--release", "2025.2", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["commit"] == upstream.head("3.0.0^{commit}")
    # Now kill while the pristine tree is being made.
    (src / "heavy" / "README").write_text("local damage\n")
    run_git(upstream.path, "tag", "-a", "-m", "x", "3.0.1")
    layout.release("2025.2", {"heavy": "3.0.1"}, services=[])
    assert kill_when(start(layout, "fetch", "--release", "2025.2"), staging_in(src))
    assert invoke(layout, "fetch", "--release", "2025.2").returncode == 0
    assert no_staging_left(layout.root / "build") and no_staging_left(layout.root.parent / "cache")
    sources = json.loads((layout.root / "build" / "2025.2" / "sources.json").read_text())
    assert sources["components"]["heavy"]["ref"] == "3.0.1"


def test_a_changed_series_moves_the_prepared_tree_in_place(heavy):
    upstream, layout = heavy
    assert invoke(layout, "patch", "--release", "2025.2").returncode == 0
    tree = layout.root / "build" / "patched" / "2025.2" / "heavy"
    untouched = (tree / "heavy" / "data" / "blob0.bin").stat().st_ino
    layout.add_patch("heavy", "2025.2", "0001-x.patch", make_patch(
        upstream.path, lambda r: (r / "README").write_text("patched\n"), "Patch"))
    assert invoke(layout, "patch", "--release", "2025.2").returncode == 0
    assert (tree / "README").read_text() == "patched\n"
    assert (tree / "heavy" / "data" / "blob0.bin").stat().st_ino == untouched  # only what the series changes is written
    assert run_git(tree, "status", "--porcelain", "--ignored") == ""


def test_kill_during_an_in_place_update_is_repaired_by_the_next_run(heavy):
    upstream, layout = heavy
    assert invoke(layout, "patch", "--release", "2025.2").returncode == 0
    tree = layout.root / "build" / "patched" / "2025.2" / "heavy"
    # A rename of every blob: small patch, long checkout (32 MB written), so the kill lands inside it.
    layout.add_patch("heavy", "2025.2", "0001-move.patch", make_patch(
        upstream.path, lambda r: run_git(r, "mv", "heavy/data", "heavy/moved"), "Move the data", "Jane Fixer <jane@fix.example>", "-M"))
    assert kill_when(start(layout, "patch", "--release", "2025.2"), lambda: (tree / ".git" / "index.lock").exists())
    result = invoke(layout, "patch", "--release", "2025.2")
    assert result.returncode == 0, result.stderr
    assert not (tree / "heavy" / "data").exists() and len(list((tree / "heavy" / "moved").iterdir())) == 40
    assert run_git(tree, "status", "--porcelain", "--ignored") == ""
    assert no_staging_left(layout.root / "build")


def test_kill_during_a_fresh_prepared_tree_keeps_the_previous_one(heavy):
    upstream, layout = heavy
    assert invoke(layout, "patch", "--release", "2025.2").returncode == 0
    patched = layout.root / "build" / "patched" / "2025.2"
    head = run_git(patched / "heavy", "rev-parse", "HEAD")
    (patched / "heavy" / ".git" / "index.lock").touch()  # what a killed checkout leaves: the tree is made anew
    layout.add_patch("heavy", "2025.2", "0001-x.patch", make_patch(
        upstream.path, lambda r: (r / "README").write_text("patched\n"), "Patch"))
    assert kill_when(start(layout, "patch", "--release", "2025.2"), staging_in(patched))
    assert run_git(patched / "heavy", "rev-parse", "HEAD") == head  # the old tree, whole
    result = invoke(layout, "patch", "--release", "2025.2")
    assert result.returncode == 0, result.stderr
    assert (patched / "heavy" / "README").read_text() == "patched\n" and no_staging_left(layout.root / "build")


def test_two_cold_fetches_of_one_component_at_once(heavy):
    _upstream, layout = heavy
    first, second = start(layout, "fetch", "--release", "2025.2"), start(layout, "fetch", "--release", "2025.2")
    outs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    assert any("waiting for" in err for _, err in outs)
    assert no_staging_left(layout.root.parent / "cache")


def test_two_runs_for_different_components_of_one_release(tmp_path, upstream):
    other = Upstream(tmp_path / "upstream", "other")
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"demo": "2.0.1", "other": "2.0.0"}, services=[])
    runs = [start(layout, "fetch", "--release", "2025.2", "--component", c) for c in ("demo", "other") for _ in range(2)]
    assert [p.wait(300) for p in runs] == [0, 0, 0, 0]
    sources = json.loads((layout.root / "build" / "2025.2" / "sources.json").read_text())["components"]
    assert (sources["demo"]["ref"], sources["other"]["ref"]) == ("2.0.1", "2.0.0")
    assert sources["other"]["commit"] == other.head("2.0.0^{commit}")


def test_a_held_lock_is_waited_for_and_named(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    lock = layout.root / "build" / ".locks" / "2025.2.lock"
    holder = subprocess.Popen(
        ["python3", "-c", f"import sys, time; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
                          "from pipeline.core import locks\n"
                          f"with locks.hold(__import__('pathlib').Path({str(lock)!r}), 'x'):\n"
                          "    print('held', flush=True); time.sleep(4)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    result = invoke(layout, "fetch", "--release", "2025.2")
    assert result.returncode == 0 and time.monotonic() - started > 2
    assert f"waiting for the work directory of 2025.2: held by pid {holder.pid}" in result.stderr
    holder.wait()
    # A holder killed with SIGKILL never blocks the next run: the kernel drops its lock.
    holder = subprocess.Popen(["python3", "-c", f"import sys, time; sys.path.insert(0, {str(REPO_ROOT)!r})\n"
                               "from pipeline.core import locks\n"
                               f"with locks.hold(__import__('pathlib').Path({str(lock)!r}), 'x'):\n"
                               "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    holder.kill()
    holder.wait()
    assert invoke(layout, "fetch", "--release", "2025.2").returncode == 0


@pytest.mark.docker
def test_kill_during_an_image_build_then_rerun(tmp_path, upstream):
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"demo": "2.0.1"})
    layout.settings_overrides["cache_dir"] = str(tmp_path / "cache")
    log = layout.root / "build" / "2025.2" / "demo" / "build.log"
    proc = start(layout, "build", "--release", "2025.2", "--service", "demo")
    assert kill_when(proc, lambda: log.exists() and "Step 3/" in log.read_text(), timeout=900)
    record = layout.root / "build" / "2025.2" / "demo" / "image.json"
    assert not record.exists()
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["result"] == "built" and json.loads(record.read_text())["image_id"]
    again = invoke(layout, "build", "--release", "2025.2", "--service", "demo", "--format", "json")
    assert json.loads(again.stdout)[0]["result"] == "up to date"


@pytest.mark.docker
def test_two_builds_on_one_engine_share_bases_without_retagging(tmp_path, upstream):
    """A fresh image prefix: both runs need every base image; one builds each, the other waits and reuses it."""
    import docker

    client = docker.from_env()
    prefix = f"faults-{os.getpid()}"
    layouts = []
    for name in ("a", "b"):
        layout = Layout(tmp_path / name, upstream.path.parent)
        layout.release("2025.2", {"demo": "2.0.1"})
        layout.settings_overrides.update(cache_dir=str(tmp_path / "cache"), image_prefix=prefix)
        layouts.append(layout)
    runs = [start(layout, "build", "--release", "2025.2", "--service", "demo") for layout in layouts]
    outs = [p.communicate(timeout=1800) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    bases = {t: img.id for img in client.images.list(name=f"{prefix}/base-build") for t in img.tags}
    bases.update({t: img.id for img in client.images.list(name=f"{prefix}/base-runtime") for t in img.tags})
    assert len(bases) == 2  # one tag each, never moved
    records = [json.loads((lay.root / "build" / "2025.2" / "demo" / "image.json").read_text()) for lay in layouts]
    assert records[0]["bases"]["build_id"] == records[1]["bases"]["build_id"]
    again = invoke(layouts[0], "build", "--release", "2025.2", "--service", "demo", "--format", "json")
    assert json.loads(again.stdout)[0]["result"] == "up to date"
    for image in client.images.list(name=f"{prefix}/*"):
        for tag in image.tags:
            client.images.remove(tag, force=True)


# --- damaged caches: nothing reaches an image that is not what was recorded when it was written ---------------


@pytest.fixture
def demo(tmp_path: Path, upstream: Upstream):
    """The demo service with a cache of its own, and a label of its own: other tests (and runs) on the engine
    build demo too, and this test's images (their immutable tags) must be its own; they go at the end."""
    import uuid

    import docker

    token = uuid.uuid4().hex[:12]
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"demo": "2.0.1"}, extra=f"service_defaults:\n  demo: {{test: {token}}}\n")
    layout.settings_overrides["cache_dir"] = str(tmp_path / "cache")
    yield layout
    client = docker.from_env()
    for image in client.images.list(filters={"label": f"io.openstack-patches.default.test={token}"}):
        for tag in image.tags:
            if not tag.endswith(":2025.2"):  # the moving tag is every test's
                client.images.remove(tag)


def build_demo(layout: Layout) -> subprocess.CompletedProcess:
    return invoke(layout, "build", "--release", "2025.2", "--service", "demo", "--format", "json")


def image_record(layout: Layout) -> dict:
    return json.loads((layout.root / "build" / "2025.2" / "demo" / "image.json").read_text())


def forget_image(layout: Layout, record: dict) -> None:
    """The image gone for the next build: its record and its immutable tag (the moving tag is every test's)."""
    import docker

    (layout.root / "build" / "2025.2" / "demo" / "image.json").unlink()
    docker.from_env().images.remove(record["tags"][0])


def damaged_then_built(layout: Layout, damage) -> tuple[dict, subprocess.CompletedProcess]:
    """Build demo, ``damage(cache_dir)``, forget the image, build again: (the first record, the second run)."""
    expect(build_demo(layout), 0)
    record = image_record(layout)
    damage(Path(layout.settings_overrides["cache_dir"]))
    forget_image(layout, record)
    return record, build_demo(layout)


def in_image(record: dict, script: str) -> str:
    import docker

    return docker.from_env().containers.run(record["tags"][0], ["python", "-c", script], remove=True).decode()


def docker_layers(image_id: str) -> list[str]:
    import docker

    return docker.from_env().api.inspect_image(image_id)["RootFS"]["Layers"]


def overwrite_keeping_stat(path: Path, offset: int, data: bytes) -> None:
    """What a bad disk does: other bytes, same size, same mtime."""
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def layer_archive(cache: Path) -> Path:
    return next((cache / "tree-layers").glob("*/layer.tar"))


SOURCE_OF_CORE = "import demo.core, inspect; print(inspect.getsource(demo.core), end='')"


@pytest.mark.docker
def test_a_corrupt_tree_layer_archive_is_made_again_never_shipped(tmp_path, upstream, demo):
    """Bytes overwritten inside a cached layer.tar (same size, mtime restored), the image forgotten, a build."""
    import tarfile

    def damage(cache: Path) -> None:
        with tarfile.open(layer_archive(cache)) as archive:
            core = next(m for m in archive if m.name.endswith("demo/core.py"))
        overwrite_keeping_stat(layer_archive(cache), core.offset_data, b"raise SystemExit")

    record, result = damaged_then_built(demo, damage)
    entry = layer_archive(tmp_path / "cache")
    recorded = json.loads((entry.parent / "layer.json").read_text())["sha256"]
    assert record["tree_layers"]["demo"]["diff_id"] == f"sha256:{recorded}"
    expect(result, 0, f"the cached layer archive {entry} of demo does not match the sha256 recorded when it was "
                      "written; making it again")
    again = image_record(demo)
    assert json.loads(result.stdout)[0]["result"] == "built" and again["tags"] == record["tags"]
    assert sha256_file(entry) == recorded and again["tree_layers"]["demo"]["diff_id"] == f"sha256:{recorded}"
    assert in_image(again, SOURCE_OF_CORE) == upstream.read("demo/core.py")
    assert f"sha256:{recorded}" in docker_layers(again["image_id"])


@pytest.mark.docker
@pytest.mark.parametrize("how", ["overwritten", "cut"])
def test_a_corrupt_byte_code_entry_is_compiled_again_never_shipped(tmp_path, demo, how):
    """16 bytes of each cached .pyc overwritten (same size, same mtime), or each cut to 100 bytes; the layer is
    then made again from the byte-code cache (its own entry removed) and the image built again."""
    import shutil

    def damage(cache: Path) -> None:
        entries = sorted((cache / "bytecode").rglob("*.pyc"))
        assert len(entries) == 4  # demo/__init__.py, demo/core.py and its tests (compiled early; the wheel skips them)
        for entry in entries:
            os.truncate(entry, 100) if how == "cut" else overwrite_keeping_stat(entry, 48, b"\xff" * 16)
        shutil.rmtree(cache / "tree-layers")

    _, result = damaged_then_built(demo, damage)
    expect(result, 0, "2 cached byte-code file(s) do not match the sha256 recorded when they were written",
           "compiling them again")
    check = ("import demo.core, marshal; code = marshal.loads(open(demo.core.__cached__, 'rb').read()[16:]); "
             "print(code.co_filename, demo.core.add(1, 2))")
    assert in_image(image_record(demo), check).split() == [
        "/var/lib/openstack/lib/python3.11/site-packages/demo/core.py", "3"]
    if how == "cut":  # the layer's two entries are whole again; the tests' were never read, nor used
        sizes = [entry.stat().st_size > 100 for entry in (tmp_path / "cache" / "bytecode").rglob("*.pyc")]
        assert sorted(sizes) == [False, False, True, True]


@pytest.mark.docker
def test_a_corrupt_wheel_of_a_patched_tree_is_built_again_never_installed(tmp_path, upstream, demo):
    """The tree's cached wheel overwritten (same size, same mtime), its layer then made again from it."""
    import shutil

    def damage(cache: Path) -> None:
        overwrite_keeping_stat(next((cache / "tree-wheels").glob("*/demo-*.whl")), 100, b"\x00" * 16)
        shutil.rmtree(cache / "tree-layers")

    record, result = damaged_then_built(demo, damage)
    wheel = next((tmp_path / "cache" / "tree-wheels").glob("*/demo-*.whl"))
    expect(result, 0, f"the cached wheel {wheel} of demo does not match the sha256 recorded when it was built; "
                      "building it again")
    assert sha256_file(wheel) == record["wheels"]["demo"]["sha256"]
    assert in_image(image_record(demo), SOURCE_OF_CORE) == upstream.read("demo/core.py")


@pytest.mark.docker
def test_an_engine_that_writes_layers_in_another_form_is_checked_against_its_own_form(tmp_path, upstream, demo):
    """The archives are written as this engine writes layers, so each one's sha256 is its layer's diff ID.  An
    engine that writes layers otherwise (newer ones leave out owner names) is stood in for by an archive in
    another form (Python's GNU tar) with the same files: the diff ID it gets is learnt once, from a build of
    the archive alone, kept beside it, and the image is checked against that."""
    import io
    import tarfile

    def rewrite(cache: Path) -> None:
        entry, other = layer_archive(cache), io.BytesIO()
        with tarfile.open(entry) as original, tarfile.open(fileobj=other, mode="w", format=tarfile.GNU_FORMAT) as out:
            for member in original:
                out.addfile(member, original.extractfile(member) if member.isfile() else None)
        entry.write_bytes(other.getvalue())
        record_file = entry.parent / "layer.json"
        record_file.write_text(json.dumps({**json.loads(record_file.read_text()), "sha256": sha256_file(entry)}))

    _, result = damaged_then_built(demo, rewrite)
    expect(result, 0)
    record, entry = image_record(demo), layer_archive(tmp_path / "cache")
    learnt = json.loads((entry.parent / "diff-ids.json").read_text())
    assert list(learnt.values()) == [record["tree_layers"]["demo"]["diff_id"]] != [f"sha256:{sha256_file(entry)}"]
    assert record["tree_layers"]["demo"]["diff_id"] in docker_layers(record["image_id"])
    assert in_image(record, SOURCE_OF_CORE) == upstream.read("demo/core.py")
    log = next(entry.parent.glob("diff-id-*.log"))
    made = log.stat().st_mtime_ns
    forget_image(demo, record)
    expect(build_demo(demo), 0)
    assert log.stat().st_mtime_ns == made  # learnt once per engine


@pytest.mark.docker
def test_an_immutable_tag_removed_by_hand_comes_back_with_no_build(demo):
    """The image stays (another tag holds it), its immutable tag is gone: the record still describes it, and the
    tag comes back."""
    import docker

    expect(build_demo(demo), 0)
    record = image_record(demo)
    client = docker.from_env()
    client.api.tag(record["image_id"], "faults-hold", record["tags"][0].rpartition(":")[2])  # ours, unlike the moving tag
    client.images.remove(record["tags"][0])
    result = build_demo(demo)
    expect(result, 0)
    assert json.loads(result.stdout)[0]["result"] == "up to date"
    assert docker_layers(record["tags"][0]) == docker_layers(record["image_id"])


def mirror_of(layout: Layout) -> Path:
    return next((layout.root.parent / "cache" / "git").glob("demo-*.git"))


@pytest.mark.parametrize("damage", ["garbage in HEAD", "garbage in config", "objects/ removed"])
def test_a_mirror_git_no_longer_recognises_is_fetched_again(layout, upstream, damage):
    """Damage that git reports as "not a git repository" or "bad config", not as a corrupt object."""
    import shutil

    layout.release("2025.2", {"demo": "2.0.1"}, services=[])
    expect(invoke(layout, "fetch", "--release", "2025.2"), 0)
    mirror = mirror_of(layout)
    if damage == "objects/ removed":
        shutil.rmtree(mirror / "objects")
    else:
        (mirror / damage.rpartition(" ")[2]).write_bytes(os.urandom(64))
    shutil.rmtree(layout.root / "build" / "src" / "2025.2" / "demo")  # the next fetch needs the mirror
    offline = invoke(layout, "fetch", "--release", "2025.2", "--offline")
    expect(offline, 13, f"the git mirror {mirror} of demo is corrupt", "offline mode forbids fetching it again",
           "run once without --offline")
    result = invoke(layout, "fetch", "--release", "2025.2", "--format", "json")
    expect(result, 0, f"the git mirror {mirror} is corrupt", "removing it and fetching again")
    assert json.loads(result.stdout)[0]["commit"] == upstream.head("2.0.1^{commit}")
    assert run_git(mirror, "fsck", "--no-progress") == "" and (layout.root / "build" / "src" / "2025.2" / "demo").is_dir()


# --- settings, flags and inputs: one clear error, its exit code, nothing written -------------------------


SECRET = "s3cretPW"


@dataclass(frozen=True)
class Case:
    """One bad input: what the user runs (``{dir}`` is the case's folder), and what must come of it."""

    name: str
    args: tuple[str, ...]
    code: int
    messages: tuple[str, ...]
    files: tuple[tuple[str, str], ...] = ()  # written into {dir} first
    env: tuple[tuple[str, str], ...] = ()
    nothing_written: bool = True  # the work directory is not even created


CASES = [
    Case("yaml syntax error in the -f file", ("-f", "{dir}/site.yaml", "fetch", "--release", "2025.2"), 2,
         ("{dir}/site.yaml:3:1: invalid YAML: expected ',' or ']'",), files=(("site.yaml", "pipeline:\n  workdir: [x\n"),)),
    Case("pipeline: 5 in the -f file", ("-f", "{dir}/site.yaml", "fetch", "--release", "2025.2"), 2,
         ("{dir}/site.yaml:1: pipeline: must be a mapping of settings, not 5",), files=(("site.yaml", "pipeline: 5\n"),)),
    Case("a -f file that is a list", ("-f", "{dir}/site.yaml", "fetch", "--release", "2025.2"), 2,
         ("{dir}/site.yaml: a settings file is a mapping",), files=(("site.yaml", "- workdir\n"),)),
    Case("json syntax error in the -f file", ("-f", "{dir}/site.json", "fetch", "--release", "2025.2"), 2,
         ("{dir}/site.json:1:15: invalid JSON: Expecting ',' delimiter",), files=(("site.json", '{"pipeline": 5'),)),
    Case("a -f file that does not exist", ("-f", "{dir}/absent.yaml", "fetch", "--release", "2025.2"), 2,
         ("{dir}/absent.yaml: the settings file given to invoke -f does not exist",)),
    Case("a -f file of a type invoke does not read", ("-f", "{dir}/site.txt", "fetch", "--release", "2025.2"), 2,
         ("{dir}/site.txt: invoke -f reads settings from .yaml, .yml or .json files",), files=(("site.txt", "x"),)),
    Case("registry credentials in the setting, with --push", ("build", "--release", "2025.2", "--service", "demo", "--push"),
         2, ("pipeline.registry: 'u:***@127.0.0.1:1' is not a registry as images name it (host[:port][/path]): it holds "
             "credentials", "hint: use 127.0.0.1:1, and log in with `docker login 127.0.0.1:1`"),
         env=(("INVOKE_PIPELINE_REGISTRY", f"u:{SECRET}@127.0.0.1:1"),)),
    Case("registry credentials in --cache-from, as a URL", ("build", "--release", "2025.2", "--service", "demo",
                                                           "--cache-from", f"https://u:{SECRET}@127.0.0.1:1/cache"),
         7, ("--cache-from: 'https://u:***@127.0.0.1:1/cache' is not a registry", "use 127.0.0.1:1/cache")),
    Case("registry credentials in --cache-from", ("build", "--release", "2025.2", "--service", "demo", "--cache-from",
                                                 f"u:{SECRET}@127.0.0.1:1"), 7,
         ("--cache-from: 'u:***@127.0.0.1:1' is not a registry as images name it (host[:port][/path]): it holds "
          "credentials",)),
    Case("registry credentials in cache_registry", ("build", "--release", "2025.2", "--service", "demo"), 2,
         ("pipeline.cache_registry: 'u:***@127.0.0.1:1' is not a registry",),
         env=(("INVOKE_PIPELINE_CACHE_REGISTRY", f"u:{SECRET}@127.0.0.1:1"),)),
    Case("sbom of an unknown service", ("sbom", "--release", "2025.2", "--service", "nosuch"), 4,
         ("'nosuch' is not a service of release 2025.2", "services of 2025.2: demo")),
    Case("vex of an unknown release", ("vex", "--release", "2099.1", "--service", "demo"), 3,
         ("unknown release '2099.1'", "known releases: 2025.2")),
    Case("sbom of a library", ("sbom", "--release", "2025.2", "--service", "lib"), 4,
         ("'lib' is not a service of release 2025.2",)),
    Case("constraints --update --from a file that does not exist",
         ("constraints", "--release", "2025.2", "--update", "--from", "{dir}/absent.txt"), 10,
         ("upper-constraints of 2025.2: {dir}/absent.txt cannot be read: No such file or directory",
          "hint: check --from (a URL, or a file path); releases/2025.2/upper-constraints.txt is unchanged"),
         nothing_written=False),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_input_is_one_clear_error(tmp_path, upstream, case):
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"demo": "2.0.1", "lib": "2.0.1"}, services=["demo"])
    snapshot = layout.root / "releases" / "2025.2" / "upper-constraints.txt"
    snapshot.write_text((REPO_ROOT / "releases" / "2025.2" / "upper-constraints.txt").read_text())
    folder = tmp_path / "case"
    folder.mkdir()
    for name, text in case.files:
        (folder / name).write_text(text)
    result = invoke(layout, *(arg.replace("{dir}", str(folder)) for arg in case.args), env=dict(case.env))
    expect(result, case.code, *(message.replace("{dir}", str(folder)) for message in case.messages))
    assert SECRET not in result.stdout + result.stderr
    assert snapshot.read_text() == (REPO_ROOT / "releases" / "2025.2" / "upper-constraints.txt").read_text()
    if case.nothing_written:
        assert not (layout.root / "build").exists()
    assert not list((layout.root / "build").glob("logs/internal-error-*"))


def test_a_yaml_error_in_invoke_yaml_is_one_clear_error(tmp_path):
    """invoke reads invoke.yaml next to tasks.py before any task runs: a project whose file is broken."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("tasks.py", "pipeline", "releases"):
        (project / name).symlink_to(REPO_ROOT / name)
    (project / "invoke.yaml").write_text("pipeline:\n  workdir: build\n  offline: [true\n")
    result = subprocess.run(["invoke", "-r", str(project), "fetch", "--release", "2025.2"], capture_output=True,
                            text=True, env={**os.environ, "INVOKE_PIPELINE_WORKDIR": str(tmp_path / "build")})
    expect(result, 2, f"{project / 'invoke.yaml'}:4:1: invalid YAML", "hint: fix the syntax and rerun")
    assert not (tmp_path / "build").exists()
    (project / "invoke.yaml").write_text("pipeline: [workdir]\n")
    result = subprocess.run(["invoke", "-r", str(project), "--list"], capture_output=True, text=True)
    expect(result, 2, f"{project / 'invoke.yaml'}:1: pipeline: must be a mapping of settings, not ['workdir']")


@pytest.mark.docker
def test_hotpatch_says_once_which_engine_it_uses(layout, upstream):
    layout.release("2025.2", {"demo": "2.0.1"})
    result = invoke(layout, "hotpatch", "--release", "2025.2", "--service", "demo", "--container", "no-such-container-x")
    expect(result, 47, "no container named no-such-container-x")
    assert result.stderr.count("engine: ") == 1


def test_a_patch_with_no_body_keeps_its_subject_and_gets_its_trailer_below(layout, upstream):
    """A subject like "rabbit: Fix ..." looks like a trailer; git does not read a subject as one, nor do we."""
    layout.release("2025.2", {"demo": "2.0.1"}, services=[])
    layout.add_patch("demo", "2025.2", "0001-fix.patch", make_patch(
        upstream.path, lambda r: (r / "NOTES").write_text("fixed\n"), "core: Fix the greeting"))
    expect(invoke(layout, "patch", "--release", "2025.2"), 0)
    tree = layout.root / "build" / "patched" / "2025.2" / "demo"
    assert run_git(tree, "log", "-1", "--format=%s") == "core: Fix the greeting"
    assert run_git(tree, "log", "-1", "--format=%b") == "Patch-File: patches/demo/2025.2/0001-fix.patch"


def test_offline_a_changed_override_that_needs_the_index_says_so(layout, upstream, tmp_path):
    """With --offline and an override changed, the lock must be resolved again: uv's cache lacks the index's
    pages (here its own, empty), so that needs the index, which is what the error says (not "adjust overrides")."""
    upstream.write("requirements.txt", "six\n")
    upstream.commit("Require six")
    upstream.tag("2.1.0")
    layout.release("2025.2", {"demo": "2.1.0"})
    expect(invoke(layout, "build", "--release", "2025.2", "--service", "demo"), 0)
    overrides = layout.root / "overrides" / "2025.2" / "constraints.txt"
    overrides.parent.mkdir(parents=True)
    overrides.write_text("# older six, for a test\nsix===1.16.0\n")
    stamps = sorted(p.read_bytes() for p in (layout.root / "build" / ".stamps" / "lock").rglob("*.json"))
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo", "--offline",
                    env={"UV_CACHE_DIR": str(tmp_path / "empty-uv-cache")})
    expect(result, 10, "demo (2025.2): resolving the dependencies needs the package index",
           "offline mode forbids reading it", "six was not found in the cache", "run once without --offline")
    assert "adjust" not in result.stderr
    assert sorted(p.read_bytes() for p in (layout.root / "build" / ".stamps" / "lock").rglob("*.json")) == stamps


# --- the disk ---------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 20 MB file system (tmpfs) for the work directory; yields its path and a way to grow it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], check=True)
    try:
        yield mount, lambda: subprocess.run(["mount", "-o", "remount,size=200m", str(mount)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_a_checkout_names_the_work_directory_and_spares_the_mirror(heavy, small_disk):
    """The checkout of a 32 MB tree into a 20 MB work directory: git prints "unable to write file" for each
    file and names the cause last; that is a full disk (exit 9), not a git failure or a corrupt mirror."""
    upstream, layout = heavy
    disk, grow = small_disk
    layout.settings_overrides["workdir"] = str(disk / "build")
    result = invoke(layout, "fetch", "--release", "2025.2")
    expect(result, 9, f"no space left on the device of the work directory {disk / 'build'}",
           "free space there (or point workdir / cache_dir at a larger file system), then rerun")
    assert "unable to write file" not in result.stderr and len(result.stderr.splitlines()) < 10
    mirror = next((layout.root.parent / "cache" / "git").glob("heavy-*.git"))
    assert "is corrupt" not in result.stderr and run_git(mirror, "fsck", "--no-progress") == ""
    assert no_staging_left(disk) and not (disk / "build" / "src" / "2025.2" / "heavy").exists()
    pack = sorted(p.stat().st_ino for p in (mirror / "objects").rglob("*") if p.is_file())
    grow()
    result = invoke(layout, "fetch", "--release", "2025.2", "--format", "json")
    expect(result, 0)
    assert json.loads(result.stdout)[0]["commit"] == upstream.head("3.0.0^{commit}")
    assert sorted(p.stat().st_ino for p in (mirror / "objects").rglob("*") if p.is_file()) == pack  # not fetched again
    assert run_git(disk / "build" / "src" / "2025.2" / "heavy", "status", "--porcelain") == ""
