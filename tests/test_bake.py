"""`invoke bake`: the bake file carries the docker-py plan, and buildah builds the same image from it.

buildah (Debian bookworm's 1.28) has real named build contexts
(``--build-context name=dir``), which replace the Dockerfile stage of the
same name as BuildKit's bake ``contexts`` do; it stands in for buildx,
which is not packaged here.  It runs with its own storage, which is removed
afterwards.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import docker
import pytest
from conftest import Upstream, demo_layout, invoke, make_patch
from packaging.utils import canonicalize_name

from pipeline import build as build_stage
from pipeline.core.files import read_json, sha256_file

pytestmark = [pytest.mark.docker, pytest.mark.network]

LIST_DISTRIBUTIONS = ("import importlib.metadata as m, json; "
                      "print(json.dumps(sorted([d.metadata['Name'], d.version] for d in m.distributions())))")


@pytest.fixture
def baked(tmp_path, upstream, cache):
    """demo built through docker-py, then `invoke bake` for it: (layout, image record, bake target).

    demo has a dependency of its own (six, added by a patch) that the release's
    other service does not share, so its image has a dependency layer built
    from the ``wheels`` context, besides the tree and its build requirements.
    """
    Upstream(upstream.path.parent, "other")
    layout = demo_layout(tmp_path, upstream, cache)
    layout.release("2025.2", {"demo": "2.0.1", "other": "2.0.1"})
    layout.add_patch("demo", "2025.2", "0001-six.patch",
                     make_patch(upstream.path, lambda r: (r / "requirements.txt").write_text("six\n"), "Depend on six"))
    report = build_stage.build(layout.project(), "2025.2", ["demo"])
    assert report.first_error() is None, report.first_error()
    result = invoke(layout, "bake", "--release", "2025.2", "--service", "demo", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((layout.root / "build" / "2025.2" / "docker-bake.json").read_text())
    data = json.loads(result.stdout)
    assert data["group"] == {"default": {"targets": ["demo"]}}
    return layout, report.image("demo").record, data["target"]["demo"]


def test_bake_target_is_the_docker_py_plan(baked):
    layout, record, target = baked
    workdir = layout.root / "build"
    inputs = read_json(workdir / "2025.2" / "demo" / "build-inputs.json")
    assert target["labels"] == record.labels == inputs["labels"]
    context = Path(target["context"])
    assert (context / target["dockerfile"]).read_text() == (workdir / "2025.2" / "demo" / "Dockerfile").read_text()
    # Base images by tag instead of ID: the same images.  (Before the tags, which hash all of these:
    # a failure then names the input that differs.)
    engine = docker.APIClient(version="auto")
    for arg in ("BUILD_BASE", "RELEASE_BUILD", "RELEASE_BASE"):
        assert not target["args"][arg].startswith("sha256:")
        assert (arg, engine.inspect_image(target["args"][arg])["Id"]) == (arg, inputs["buildargs"][arg])
    assert {k: v for k, v in target["args"].items() if k not in ("BUILD_BASE", "RELEASE_BUILD", "RELEASE_BASE")} == \
        {k: v for k, v in inputs["buildargs"].items() if k not in ("BUILD_BASE", "RELEASE_BUILD", "RELEASE_BASE")}
    assert target["tags"] == list(record.tags)
    # Named contexts: real directories, one per stage that docker-py feeds from a context image.
    contexts = target["contexts"]
    assert set(contexts) == {"wheels"}
    assert [p.name.split("-")[0] for p in Path(contexts["wheels"]).iterdir()] == ["six"]  # its dependency layer's
    # The patched tree's layer: the archives the docker-py build sent, byte for byte, in the context.
    trees = sorted(str(p.relative_to(context)) for p in (context / "trees").rglob("*") if p.is_file())
    assert trees == ["trees/service/layer.tar", "trees/service/metadata.tar"]
    assert sha256_file(context / "trees" / "service" / "layer.tar") == record.tree_layers["demo"]["sha256"]
    assert [layer["name"] for layer in record.layers] == ["release level 0 (2 services)", "runtime files", "dependencies",
                                                          "service"]
    # The package files are the hash-checked files of the cache, byte for byte.
    wheel_cache = Path(layout.settings_overrides["cache_dir"]) / "wheels"
    for path in Path(contexts["wheels"]).iterdir():
        digest = sha256_file(path)
        assert (wheel_cache / digest[:2] / digest / path.name).is_file()


def buildah(storage: Path, *args: str) -> str:
    result = subprocess.run(["buildah", f"--root={storage / 'root'}", f"--runroot={storage / 'run'}",
                             "--storage-driver=overlay", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"buildah {' '.join(args[:3])}: {result.stderr[-3000:]}"
    return result.stdout


def distributions(engine, image: str) -> list[list[str]]:
    out = engine.containers.run(image, ["/var/lib/openstack/bin/python", "-c", LIST_DISTRIBUTIONS], remove=True)
    return [[canonicalize_name(n), v] for n, v in json.loads(out)]


def test_buildah_builds_the_bake_target_like_docker_py(baked, tmp_path):
    assert shutil.which("buildah"), "buildah is not installed (scripts/setup installs it)"
    _, record, target = baked
    storage = tmp_path / "buildah"
    name = f"localhost/bake-test/demo:{uuid.uuid4().hex[:8]}"
    engine = docker.from_env()
    try:
        # The base images are the engine's: buildah reads them from it (image IDs are kept).
        for arg in ("BUILD_BASE", "RELEASE_BUILD", "RELEASE_BASE"):
            buildah(storage, "pull", "--quiet", f"docker-daemon:{target['args'][arg]}")
        command = ["build", "--isolation=chroot", "--pull=never", "-f", target["dockerfile"], "-t", name]
        for stage, directory in target["contexts"].items():
            command.append(f"--build-context={stage}={directory}")
        for key, value in target["args"].items():
            command.append(f"--build-arg={key}={value}")
        for key, value in target["labels"].items():
            command.append(f"--label={key}={value}")
        buildah(storage, *command, target["context"])
        buildah(storage, "push", "--quiet", name, f"docker-daemon:{name}")
        built = engine.images.get(name)
        assert built.id != record.image_id  # built by another builder ...
        assert built.labels.items() >= record.labels.items()
        expected = distributions(engine, record.image_id)
        assert distributions(engine, name) == expected  # ... installing the same
        assert {n for n, _ in expected} == {"demo", "six"}
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.images.remove(name, noprune=False)
        subprocess.run(["buildah", f"--root={storage / 'root'}", f"--runroot={storage / 'run'}", "rmi", "--all",
                        "--force"], capture_output=True)
        shutil.rmtree(storage, ignore_errors=True)
