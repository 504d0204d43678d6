"""Remote engines and the shared layer cache, on a second Docker engine that this module starts itself.

Engine B is a real ``dockerd`` on a loopback TCP port with TLS (certificates
made here with openssl), its own data root, exec root, pid file and
configuration, and no bridge (``--bridge=none``: its containers have no
network, so everything that needs one must come from the layer cache or the
host).  It is also reached over ssh through an sshd on loopback.  Engine A
is the machine's own engine.  A builds the demo service and fills a
loopback registry used as the layer cache; B, empty, builds the same inputs
from it and then a changed service.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import docker
import pytest
from conftest import Layout, demo_layout, free_port, invoke, make_patch, serve_registry
from second_engine import Engine, make_certificates, second_engine

from pipeline import build as build_stage
from pipeline.image import bases

pytestmark = [pytest.mark.docker, pytest.mark.network]


@pytest.fixture(scope="module")
def engine_b():
    with second_engine() as engine:
        yield engine


@pytest.fixture(scope="module")
def cache_registry(tmp_path_factory):
    with serve_registry(tmp_path_factory.mktemp("layer-cache")) as address:
        yield address
    engine_a = docker.APIClient(version="auto")
    for image in engine_a.images():
        for ref in image.get("RepoTags") or ():
            if ref.startswith(f"{address}/"):
                engine_a.remove_image(ref, noprune=True)


def tags_in(registry: str, repository: str) -> list[str]:
    with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list") as response:
        return json.loads(response.read())["tags"] or []


def image_ids(client, prefix: str) -> dict[str, str]:
    """Local tag -> image ID for every image named under ``prefix``."""
    return {ref: image["Id"] for image in client.images() for ref in image.get("RepoTags") or ()
            if ref.startswith(f"{prefix}/")}


# --- connection and its errors --------------------------------------------------------------


def test_unreachable_tcp_engine_and_a_refused_tls_client(tmp_path, upstream, engine_b):
    layout = demo_layout(tmp_path, upstream, tmp_path / "cache")
    port = free_port()
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo",
                    env={"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    assert result.returncode == 40 and "Traceback" not in result.stderr
    assert f"no Docker engine answers at tcp://127.0.0.1:{port} (plain TCP, no TLS)" in result.stderr
    # Engine B demands a client certificate: one from another CA is refused, clearly.
    stranger = tmp_path / "stranger"
    make_certificates(stranger)
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo",
                    env={**engine_b.env(), "DOCKER_CERT_PATH": str(stranger)})
    assert result.returncode == 40 and "Traceback" not in result.stderr
    assert f"no Docker engine answers at {engine_b.host} (TLS, server verified" in result.stderr
    assert not (layout.root / "build" / "2025.2").exists()


def test_two_engines_on_one_host_have_distinct_lock_keys(engine_b):
    from pipeline.image.engine import engine_info, engine_key

    a, b = docker.APIClient(version="auto"), engine_b.client()
    assert engine_info(a)["id"] == engine_info(b)["id"]  # Docker 20.10: both from /etc/docker/key.json
    assert engine_key(a) != engine_key(b)


def test_rootfs_is_bootstrapped_on_the_host_and_imported_into_a_remote_engine(tmp_path, upstream, engine_b, monkeypatch):
    prefix = f"engines-{uuid.uuid4().hex[:8]}"
    layout = demo_layout(tmp_path, upstream, tmp_path / "cache", "base: {bootstrap: debootstrap}\n")
    for key, value in engine_b.env().items():
        monkeypatch.setenv(key, value)
    project = layout.project(image_prefix=prefix)
    from pipeline.image.engine import connect

    client = connect(project.settings)
    assert client.info()["DockerRootDir"] == str(engine_b.root / "data")
    rel = project.release("2025.2")
    origin = bases._origin(client, project, rel, tmp_path / "logs")
    assert origin.startswith(f"{prefix}/rootfs:bookworm-")
    assert list(image_ids(engine_b.client(), prefix)) == [origin]
    assert image_ids(docker.APIClient(version="auto"), prefix) == {}  # engine A got nothing


# --- the shared layer cache, engine A to engine B ---------------------------------------------


@pytest.fixture(scope="module")
def on_a(tmp_path_factory, cache_registry, cache):
    """The demo service built on engine A with the layer cache: what a first runner leaves in the cache."""
    from conftest import Upstream

    base = tmp_path_factory.mktemp("engines-demo")
    upstream = Upstream(base / "upstream")
    layout = demo_layout(base, upstream, cache)
    report = build_stage.build(layout.project(cache_registry=cache_registry), "2025.2", ["demo"])
    assert report.first_error() is None, report.first_error()
    return layout, upstream, report.image("demo").record


def on_b(layout: Layout, env: dict[str, str], workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """`invoke build` of demo as a fresh runner (its own work directory) on the engine ``env`` names."""
    return invoke(layout, "build", "--release", "2025.2", "--service", "demo", "--format", "json", *args,
                  env={**env, "INVOKE_PIPELINE_WORKDIR": str(workdir)})


def made_here(workdir: Path) -> list[str]:
    """Every build that ran, by its log (each engine build writes one: bases, release layer, contexts, service)."""
    return sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*.log"))


def test_empty_engine_b_builds_the_same_inputs_from_the_cache(on_a, engine_b, cache_registry, tmp_path):
    layout, _, record = on_a
    for repository in ("openstack-patches/base-build", "openstack-patches/base-runtime", "openstack-patches/demo"):
        assert tags_in(cache_registry, repository)
    client_b = engine_b.client()
    assert image_ids(client_b, "openstack-patches") == {}
    result = on_b(layout, engine_b.env(), tmp_path, "--cache-from", cache_registry)
    assert result.returncode == 0, result.stderr
    assert f"engine: {engine_b.host} (TLS, server verified, client certificate from {engine_b.certs})" in result.stderr
    (row,) = json.loads(result.stdout)
    assert row["result"] == "from the layer cache" and row["image_id"] == record.image_id, result.stderr
    # Nothing was built on B, everything was pulled: the same images, layer for layer.
    assert made_here(tmp_path) == []
    assert "layer cache: pull the build base" in result.stderr
    engine_a = docker.APIClient(version="auto")
    for ref in (record.bases["build"], record.bases["runtime"], record.bases["release_layer"], record.tags[0]):
        assert client_b.inspect_image(ref)["Id"] == engine_a.inspect_image(ref)["Id"]
        assert client_b.inspect_image(ref)["RootFS"]["Layers"] == engine_a.inspect_image(ref)["RootFS"]["Layers"]


def build_changed(layout: Layout, upstream, env: dict[str, str], workdir: Path, *args: str) -> tuple[dict, str, str]:
    """Build demo with a new service patch (unique, so no engine has its image yet): result row, marker, stderr."""
    marker = uuid.uuid4().hex
    layout.add_patch("demo", "2025.2", "0001-greet.patch", make_patch(
        upstream.path, lambda r: (r / "demo/core.py").write_text(
            (r / "demo/core.py").read_text().replace('"hello, "', f'"hello, {marker} "')), "Greet with a marker"))
    result = on_b(layout, env, workdir, *args)
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["result"] == "built" and row["patches"] == 1
    # Only the patched tree's wheel and the service image were built (the tree's layer archive goes in the
    # service build's context); the dependency images were on the engine or came from the cache.
    assert made_here(workdir) == ["2025.2/demo/build.log", "2025.2/wheels/demo.log"]
    return row, marker, result.stderr


def greet(client, image: str) -> str:
    container = client.create_container(image, ["python", "-c", "import demo.core; print(demo.core.greet('x'))"])
    try:
        client.start(container)
        assert client.wait(container)["StatusCode"] == 0
        return client.logs(container).decode().strip()
    finally:
        client.remove_container(container, force=True)


def only_on_b(engine_b: Engine, row: dict) -> None:
    engine_a = docker.APIClient(version="auto")
    for ref in (row["image_id"], row["image"]):
        with pytest.raises(docker.errors.ImageNotFound):
            engine_a.inspect_image(ref)
    assert engine_b.client().inspect_image(row["image"])["Id"] == row["image_id"]


def test_a_changed_service_builds_on_b_only_and_reaches_the_cache(on_a, engine_b, cache_registry, tmp_path):
    layout, upstream, _ = on_a
    row, marker, _ = build_changed(layout, upstream, engine_b.env(), tmp_path, "--cache-from", cache_registry)
    only_on_b(engine_b, row)
    assert greet(engine_b.client(), row["image_id"]) == f"hello, {marker} x"
    assert row["image"].split(":")[1] in tags_in(cache_registry, "openstack-patches/demo")
    # The SBOM step read B's image (its containers ran on B).
    sbom = json.loads((tmp_path / "2025.2" / "demo" / "sbom.cdx.json").read_text())
    assert sbom["metadata"]["component"]["version"] == row["image"].split(":")[1]


def test_a_cached_image_without_the_trees_layers_is_built_here_and_replaced_in_the_cache(cache_registry, cache,
                                                                                          tmp_path, upstream):
    """A forged image under the service's immutable tag (the right labels, another layer where the tree's
    should be) is found by its diff IDs, never tagged or recorded: the image is built here and replaces it."""
    import io
    import tarfile

    from pipeline.image.plan import label_instruction

    # A label of its own: the forged image must not stand under a tag other tests use meanwhile.
    token = uuid.uuid4().hex[:12]
    layout = demo_layout(tmp_path, upstream, cache, f"service_defaults:\n  demo: {{test: {token}}}\n")
    first = invoke(layout, "build", "--release", "2025.2", "--service", "demo", "--cache-from", cache_registry)
    assert first.returncode == 0, first.stderr
    record = json.loads((layout.root / "build" / "2025.2" / "demo" / "image.json").read_text())
    forged_file = io.BytesIO()
    with tarfile.open(fileobj=forged_file, mode="w") as archive:
        info = tarfile.TarInfo("var/lib/openstack/lib/python3.11/site-packages/demo/core.py")
        info.size = len(b"raise SystemExit\n")
        archive.addfile(info, io.BytesIO(b"raise SystemExit\n"))
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        for name, data in (("Dockerfile", f"FROM {record['bases']['release_layer']}\nADD forged.tar /\n"
                                          f"{label_instruction(record['labels'])}".encode()),
                           ("forged.tar", forged_file.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    engine_a = docker.from_env()
    forged, _ = engine_a.images.build(fileobj=io.BytesIO(context.getvalue()), custom_context=True, rm=True)
    repository, _, version = f"{cache_registry}/{record['tags'][0]}".rpartition(":")
    forged.tag(repository, version)
    engine_a.images.push(repository, version)
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo", "--format", "json",
                    "--cache-from", cache_registry, env={"INVOKE_PIPELINE_WORKDIR": str(tmp_path / "again")})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"layer cache: {record['tags'][0]} does not hold the layer archives of this build's patched trees; " \
           "building it here" in result.stderr
    (row,) = json.loads(result.stdout)
    assert row["result"] == "built" and row["image_id"] != forged.id
    again = json.loads((tmp_path / "again" / "2025.2" / "demo" / "image.json").read_text())
    assert again["tree_layers"]["demo"]["diff_id"] in engine_a.api.inspect_image(row["image_id"])["RootFS"]["Layers"]
    assert greet(engine_a.api, record["tags"][0]) == "hello, x"
    request = urllib.request.Request(f"http://{cache_registry}/v2/{repository.partition('/')[2]}/manifests/{version}",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["config"]["digest"] == row["image_id"]  # the cache holds it now
    for image in engine_a.images.list(filters={"label": f"io.openstack-patches.default.test={token}"}):
        for ref in image.tags:
            if not ref.endswith(":2025.2"):  # the moving tag is every test's
                engine_a.images.remove(ref)
    engine_a.images.remove(forged.id, force=True)


def test_an_unreachable_cache_is_its_own_error(on_a, engine_b, tmp_path):
    layout, _, _ = on_a
    closed = f"127.0.0.1:{free_port()}"
    result = on_b(layout, engine_b.env(), tmp_path, "--cache-from", closed)
    assert result.returncode == 44 and "Traceback" not in result.stderr
    assert "error: layer cache: " in result.stderr and f"{closed}/openstack-patches/" in result.stderr


# --- ssh ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sshd(engine_b):
    """An sshd on loopback whose sessions see engine B as their local engine, and an ssh that knows it."""
    binary = "/usr/sbin/sshd"
    assert os.path.exists(binary), "openssh-server is not installed (scripts/setup installs it)"
    base = engine_b.root / "ssh"
    base.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "client_key")], check=True)
    shutil.copy(base / "client_key.pub", base / "authorized_keys")
    port = free_port()
    (base / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base}/host_key\nPidFile {base}/sshd.pid\n"
        f"AuthorizedKeysFile {base}/authorized_keys\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n"
        f"StrictModes no\nUsePAM no\nSetEnv DOCKER_HOST=unix://{engine_b.socket}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(base / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=(base / "sshd.log").open("w"))
    (base / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {base}/client_key\n  IdentitiesOnly yes\n"
                                 f"  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    # docker-py runs `ssh` from PATH; this one reads the test's ssh configuration (as ~/.ssh/config would).
    (base / "bin").mkdir()
    (base / "bin" / "ssh").write_text(f"#!/bin/sh\nexec /usr/bin/ssh -F {base}/config \"$@\"\n")
    (base / "bin" / "ssh").chmod(0o755)
    deadline = time.monotonic() + 20
    while subprocess.run([str(base / "bin" / "ssh"), "-p", str(port), "root@127.0.0.1", "true"],
                         capture_output=True).returncode != 0:
        assert proc.poll() is None and time.monotonic() < deadline, (base / "sshd.log").read_text()
        time.sleep(0.3)
    yield {"DOCKER_HOST": f"ssh://root@127.0.0.1:{port}", "PATH": f"{base / 'bin'}:{os.environ['PATH']}"}
    proc.terminate()
    proc.wait(10)


def test_ssh_engine(on_a, engine_b, sshd, cache_registry, tmp_path):
    """Over ssh (sshd's sessions see engine B as their local engine) a build runs on B, and says so."""
    layout, upstream, _ = on_a
    row, marker, stderr = build_changed(layout, upstream, sshd, tmp_path, "--cache-from", cache_registry)
    port = sshd["DOCKER_HOST"].rsplit(":", 1)[1]
    assert f"engine: ssh://127.0.0.1:{port} (over ssh) (" in stderr
    assert f"data root {engine_b.root / 'data'})" in stderr
    only_on_b(engine_b, row)
    assert greet(engine_b.client(), row["image_id"]) == f"hello, {marker} x"
