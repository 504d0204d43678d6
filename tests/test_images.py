"""Images on a real Docker engine: keystone and nova of 2025.2 with the shipped patches.

The session fixture builds both once (bases bootstrapped from Debian packages
when no registry answers); the tests then inspect and run the real images.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import docker
import pytest

from pipeline import build as build_stage
from pipeline import images
from pipeline.config import PROJECT_ROOT, Settings, load_project
from pipeline.errors import BaseImageError, ConfigError, DockerUnavailableError, ImageBuildError, PushError, SbomError

from conftest import SHARED_CONSTRAINTS, Layout, invoke

pytestmark = pytest.mark.docker

SITE = "/var/lib/openstack/lib/python3.11/site-packages"
EXPECTED = {
    "keystone": {"version": "28.0.0", "entry": "keystone-manage --version",
                 "patched": ("keystone/auth/plugins/mapped.py", "response_data['expires_at'] = token.expires_at")},
    "nova": {"version": "32.2.0", "entry": "nova-manage --version",
             "patched": ("nova/network/neutron.py", "name_to_id = defaultdict(list)")},
}


def shipped_settings(workdir: Path, **extra) -> Settings:
    return Settings.from_mapping({
        "workdir": str(workdir), "cache_dir": str(workdir.parent / "cache"),
        "constraints_url": f"file://{SHARED_CONSTRAINTS}/{{release}}.txt", **extra,
    }, root=PROJECT_ROOT)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("images") / "build"
    project = load_project(shipped_settings(workdir))
    results = build_stage.build(project, "2025.2", ["keystone", "nova"], jobs=2)
    return project, {r.service: r for r in results}


@pytest.fixture(scope="session")
def engine():
    return docker.from_env()


def run_in(engine, image: str, script: str) -> str:
    return engine.containers.run(image, ["sh", "-c", script], remove=True, stderr=True).decode()


@pytest.mark.parametrize("service", ["keystone", "nova"])
def test_smoke(built, engine, service):
    project, results = built
    record = results[service].record
    image = record["tags"][0]
    expected = EXPECTED[service]
    assert run_in(engine, image, "id -un").strip() == "openstack"
    assert run_in(engine, image, expected["entry"]).strip() == expected["version"]
    assert run_in(engine, image, f"python -c 'import {service}; print({service}.__name__)'").strip() == service
    path, line = expected["patched"]
    assert line in run_in(engine, image, f"cat {SITE}/{path}")
    # The patched library is installed at its patched content and version.
    assert "def _declare_fallback_nondurable" in run_in(engine, image, f"cat {SITE}/oslo_messaging/_drivers/impl_rabbit.py")
    versions = run_in(engine, image, "python -c \"import importlib.metadata as m; print(m.version('oslo.messaging'), m.version('eventlet'))\"")
    assert versions.split() == ["17.1.0", "0.40.3"]  # 0.40.3: the constraint override of 2025.2
    # Nothing to compile with, no source tree, no pip or uv cache, no build CA.
    leftovers = run_in(engine, image, "for p in gcc cc c++ make uv pip; do command -v $p; done; "
                                      "ls -d /build /root/.cache /etc/openstack-patches 2>/dev/null; true")
    assert leftovers.strip() == ""


def _pem_blocks(text: str) -> set[str]:
    return set(re.findall(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", text, re.S))


def test_build_ca_and_index_url_stay_out_of_the_final_image(built, engine):
    project, results = built
    record = results["keystone"].record
    image = record["tags"][0]
    host_bundle = images.build_ca_bundle(project).decode()
    image_bundle = run_in(engine, image, "cat /etc/ssl/certs/ca-certificates.crt")
    extra = _pem_blocks(host_bundle) - _pem_blocks(image_bundle)
    assert extra, "the host bundle should carry the TLS proxy's CA, which Debian's bundle lacks"
    for block in extra:
        first_line = block.splitlines()[0]
        found = run_in(engine, image, f"grep -rlF '{first_line}' / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; true")
        assert found.strip() == ""
    # The index URL reached the build base (where downloads happen) ...
    build_history = " ".join(h["CreatedBy"] for h in engine.api.history(record["bases"]["build"]))
    assert project.settings.index_url in build_history
    # ... but not the final image: not in its history, environment or labels.
    inspected = engine.api.inspect_image(image)
    history = " ".join(h["CreatedBy"] for h in engine.api.history(image))
    assert project.settings.index_url not in history
    assert not any("INDEX" in e or "CERT" in e for e in inspected["Config"]["Env"])
    assert project.settings.index_url not in str(inspected["Config"]["Labels"])


def test_build_record_tags_and_labels(built, engine):
    project, results = built
    record = results["nova"].record
    path = project.settings.workdir / "2025.2" / "nova" / "image.json"
    assert results["nova"].record_path == path and path.exists()
    assert {"image_id", "tags", "labels", "input_hash", "patches", "libraries"} <= set(record)
    assert re.fullmatch(r"openstack-patches/nova:32\.2\.0-p2-[0-9a-f]{12}", record["tags"][0])
    assert record["tags"][1] == "openstack-patches/nova:2025.2"
    assert [p["component"] for p in record["patches"]] == ["oslo.messaging", "nova"]
    assert list(record["libraries"]) == ["oslo.messaging"]  # from nova's dependency closure
    labels = engine.api.inspect_image(record["image_id"])["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "32.2.0"
    assert labels["org.opencontainers.image.revision"] == record["upstream_revision"]
    assert labels["org.opencontainers.image.source"].endswith("nova-32.2.0.tar.gz")
    assert labels["io.openstack-patches.release"] == "2025.2" and labels["io.openstack-patches.patches"] == "2"
    assert labels["org.opencontainers.image.base.name"] == record["bases"]["runtime"]
    assert not any(re.search(r"\d{4}-\d\d-\d\dT", v) for v in labels.values())  # no wall-clock values
    assert (project.settings.workdir / "2025.2" / "nova" / "build.log").read_text().count("Step ") > 10


def test_rerun_makes_no_build_call(built):
    project, results = built
    started = time.monotonic()
    again = build_stage.build(load_project(project.settings), "2025.2", ["keystone", "nova"])
    assert [(r.action, r.build_calls) for r in again] == [("up to date", 0), ("up to date", 0)]
    assert [r.record["image_id"] for r in again] == [results["keystone"].record["image_id"], results["nova"].record["image_id"]]
    assert time.monotonic() - started < 10


@pytest.mark.network
def test_libraries_follow_the_dependency_closure(built, tmp_path):
    project, results = built
    constraints = (project.settings.workdir / "2025.2" / "upper-constraints.txt").read_text()
    lib = images.SourceInput("oslo.messaging", "17.1.0", tmp_path / "none", "0" * 40, "", None, ())

    def service(requirements: str) -> images.SourceInput:
        tree = tmp_path / f"svc-{abs(hash(requirements))}"
        tree.mkdir()
        (tree / "requirements.txt").write_text(requirements)
        return images.SourceInput(tree.name, "1.0.0", tree, "1" * 40, "", None, ())

    deps, needed = images.dependency_lock(project, "2025.2", service("oslo.config>=9\n"), {"oslo.messaging": lib}, constraints)
    assert needed == [] and "oslo-config==10.0.0" in deps
    deps, needed = images.dependency_lock(project, "2025.2", service("oslo.versionedobjects\n"), {"oslo.messaging": lib}, constraints)
    assert needed == ["oslo.messaging"]  # only a transitive dependency, still found
    assert "oslo-messaging" not in deps  # installed from the patched tree instead


def demo_layout(tmp_path: Path, upstream, dockerfile: str | None = None, base: str = "") -> Layout:
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"demo": "1.0.0"}, extra=base)
    if dockerfile:
        path = layout.root / "dockerfiles" / "2025.2" / "demo.Dockerfile"
        path.parent.mkdir(parents=True)
        path.write_text(dockerfile)
    layout.settings_overrides["cache_dir"] = str(tmp_path / "cache")
    return layout


def test_failing_step_names_service_step_and_log(built, tmp_path, upstream):
    layout = demo_layout(tmp_path, upstream, "ARG BUILD_BASE\nFROM ${BUILD_BASE}\nRUN echo preparing\nRUN echo broken >&2 && exit 3\n")
    with pytest.raises(ImageBuildError) as info:
        build_stage.build(layout.project(), "2025.2", ["demo"])
    message = str(info.value)
    assert "2025.2/demo: image build failed at step 4/14: RUN echo broken >&2 && exit 3" in message
    assert "returned a non-zero code: 3" in message
    log = layout.root / "build" / "2025.2" / "demo" / "build.log"
    assert f"full build log: {log}" in message and "broken" in log.read_text()
    assert not (layout.root / "build" / "2025.2" / "demo" / "image.json").exists()
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo")
    assert result.returncode == ImageBuildError.exit_code and "Traceback" not in result.stderr


def test_no_engine(tmp_path, upstream):
    layout = demo_layout(tmp_path, upstream)
    env_layout = layout
    result = subprocess.run(["invoke", "-r", str(PROJECT_ROOT), "build", "--release", "2025.2", "--service", "demo"],
                            env={**env_layout.invoke_env(), "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
                            capture_output=True, text=True)
    assert result.returncode == DockerUnavailableError.exit_code
    assert f"no Docker engine answers at unix://{tmp_path}/no-engine.sock" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (layout.root / "build" / "2025.2" / "demo").exists()


@pytest.mark.parametrize("base,text", [
    ("base: {image: 'registry.invalid/nothing:1', bootstrap: pull}\n", "cannot pull base image registry.invalid/nothing:1"),
    ("base: {debian_mirror: 'http://127.0.0.1:9/debian', bootstrap: debootstrap}\n", "debootstrap of bookworm from http://127.0.0.1:9/debian failed"),
])
def test_base_cannot_be_pulled_or_bootstrapped(tmp_path, upstream, base, text):
    layout = demo_layout(tmp_path, upstream, base=base)
    with pytest.raises(BaseImageError, match=re.escape(text)):
        build_stage.build(layout.project(), "2025.2", ["demo"])
    assert not (layout.root / "build" / "2025.2" / "demo" / "image.json").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed (apt-get install docker-registry; .ci/run does it)")
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def test_push_failures(built, tmp_path, upstream):
    project, _ = built
    with pytest.raises(ConfigError, match="--push needs a registry"):
        build_stage.build(project, "2025.2", ["keystone"], push=True)
    closed = f"127.0.0.1:{_free_port()}"
    unreachable = load_project(shipped_settings(project.settings.workdir, registry=closed))
    with pytest.raises(PushError, match=f"push of {closed}/openstack-patches/keystone:.* failed") as info:
        build_stage.build(unreachable, "2025.2", ["keystone"], push=True)
    assert info.value.exit_code == PushError.exit_code
    assert "pushed" not in images.read_json(project.settings.workdir / "2025.2" / "keystone" / "image.json")


def test_push_to_loopback_registry(built, registry):
    project, results = built
    pushing = load_project(shipped_settings(project.settings.workdir, registry=registry))
    (result,) = build_stage.build(pushing, "2025.2", ["keystone"], push=True)
    assert result.action == "up to date"
    tags = urllib.request.urlopen(f"http://{registry}/v2/openstack-patches/keystone/tags/list").read().decode()
    immutable = result.record["tags"][0].split(":")[1]
    assert immutable in tags and "2025.2" in tags
    pushed = images.read_json(result.record_path)["pushed"]
    assert set(pushed) == {f"{registry}/{t}" for t in result.record["tags"]}
    assert all(d.startswith("sha256:") for d in pushed.values())


# --- SBOM and manifest (issue: patch traceability) -------------------------------------

import json  # noqa: E402

from cyclonedx.schema import SchemaVersion  # noqa: E402
from cyclonedx.validation.json import JsonStrictValidator  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

from pipeline import manifest as manifest_stage  # noqa: E402
from pipeline import sbom as sbom_stage  # noqa: E402
from pipeline.patches import parse_patch  # noqa: E402


def load_sbom(project, service):
    path = sbom_stage.sbom_path(project, "2025.2", service)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize("service", ["keystone", "nova"])
def test_sbom_is_valid_cyclonedx_1_6(built, service):
    project, results = built
    path, doc = load_sbom(project, service)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(path.read_text()) is None
    assert doc["specVersion"] == "1.6"
    meta = doc["metadata"]["component"]
    record = images.read_json(results[service].record_path)
    assert meta["type"] == "container" and f"{meta['name']}:{meta['version']}" == record["tags"][0]
    assert meta["hashes"][0]["content"] == record["image_id"].split(":")[1]
    assert record["sbom"]["sha256"] == sbom_stage.sha256_bytes(path.read_bytes())


@pytest.mark.parametrize("service,component", [("nova", "nova"), ("nova", "oslo.messaging"), ("keystone", "keystone")])
def test_pedigree_matches_patch_files(built, service, component):
    project, _ = built
    _, doc = load_sbom(project, service)
    entry = next(c for c in doc["components"] if canonicalize_name(c["name"]) == canonicalize_name(component))
    files = sorted((PROJECT_ROOT / "patches" / component / "2025.2").glob("*.patch"))
    patches = entry["pedigree"]["patches"]
    assert [p["diff"]["url"] for p in patches] == [str(f.relative_to(PROJECT_ROOT)) for f in files]
    assert [p["diff"]["text"]["content"] for p in patches] == [f.read_text() for f in files]
    assert all(p["type"] == "backport" for p in patches)
    for patch, path in zip(patches, files):
        meta = parse_patch(path.read_text(), path.name)
        bugs = [("defect", v.strip("#")) for k, v in sbom_stage.trailers(meta.message) if k == "Closes-Bug"]
        cves = [("security", c) for c in dict.fromkeys(re.findall(r"CVE-\d{4}-\d+", meta.message))]
        assert [(r["type"], r["id"]) for r in patch.get("resolves", [])] == bugs + cves
    ancestor = entry["pedigree"]["ancestors"][0]
    sources = json.loads((project.settings.workdir / "2025.2" / "sources.json").read_text())["components"][component]
    assert ancestor["version"] == sources["version"]
    refs = {r["type"]: r for r in ancestor["externalReferences"]}
    assert refs["vcs"]["url"] == f"https://opendev.org/openstack/{component}"
    assert sources["upstream_revision"] in refs["vcs"]["comment"]
    assert refs["distribution"]["hashes"][0]["content"] == sources["sdist_sha256"]


def test_real_fixes_resolve_their_bug_and_cve(built):
    project, _ = built
    _, doc = load_sbom(project, "nova")
    nova = next(c for c in doc["components"] if c["name"] == "nova")
    (bug,) = nova["pedigree"]["patches"][0]["resolves"]
    assert (bug["type"], bug["id"], bug["references"]) == ("defect", "2105896", ["https://bugs.launchpad.net/bugs/2105896"])
    _, doc = load_sbom(project, "keystone")
    keystone = next(c for c in doc["components"] if c["name"] == "keystone")
    (cve,) = keystone["pedigree"]["patches"][2]["resolves"]
    assert (cve["type"], cve["id"], cve["references"]) == (
        "security", "CVE-2026-44394", ["https://nvd.nist.gov/vuln/detail/CVE-2026-44394"])


def test_override_properties(built):
    project, _ = built
    _, doc = load_sbom(project, "nova")
    eventlet = next(c for c in doc["components"] if c["name"] == "eventlet")
    props = {p["name"]: p["value"] for p in eventlet["properties"]}
    assert props["openstack-patches:constraint:upstream"] == "eventlet===0.40.2"
    assert props["openstack-patches:constraint:effective"] == "eventlet===0.40.3"
    assert "request smuggling" in props["openstack-patches:constraint:reason"]
    assert props["openstack-patches:constraint:source"].startswith("overrides/2025.2/constraints.txt")
    messaging = next(c for c in doc["components"] if c["name"] == "oslo.messaging")
    props = {p["name"]: p["value"] for p in messaging["properties"]}
    assert props["openstack-patches:constraint:effective"] == "(removed)"
    assert props["openstack-patches:constraint:why"] == "built from patched source (oslo.messaging)"


def test_sbom_lists_exactly_what_uv_reports_in_the_image(built, engine):
    project, results = built
    _, doc = load_sbom(project, "keystone")
    in_sbom = {(canonicalize_name(c["name"]), c["version"]) for c in doc["components"] if c["purl"].startswith("pkg:pypi/")}
    uv = images._uv_binary()
    listed = engine.containers.run(
        results["keystone"].record["image_id"],
        ["/opt/uv", "pip", "list", "--python", "/var/lib/openstack/bin/python", "--format", "json", "--offline"],
        volumes={uv: {"bind": "/opt/uv", "mode": "ro"}}, remove=True, user="root")
    in_image = {(canonicalize_name(p["name"]), p["version"]) for p in json.loads(listed)}
    assert in_sbom == in_image and len(in_image) > 50
    debs = [c for c in doc["components"] if c["purl"].startswith("pkg:deb/debian/")]
    assert any(c["name"].startswith("python3.11") for c in debs)


def test_sbom_is_reproducible(built):
    project, results = built
    path, _ = load_sbom(project, "keystone")
    first = path.read_bytes()
    # Build again with the same inputs: record and SBOM are gone, the engine's cache gives the same image.
    path.unlink()
    results["keystone"].record_path.unlink()
    (again,) = build_stage.build(load_project(project.settings), "2025.2", ["keystone"])
    assert again.record["image_id"] == results["keystone"].record["image_id"]
    assert path.read_bytes() == first


def test_manifest_pins_images_and_lists_missing(built):
    project, results = built
    path, data = manifest_stage.write(project, "2025.2")
    assert path == project.settings.workdir / "2025.2" / "manifest.yaml"
    nova = data["services"]["nova"]
    record = images.read_json(results["nova"].record_path)
    assert nova["image"] == record["tags"][0] and nova["image_id"] == record["image_id"]
    assert (nova["version"], nova["patches"], nova["upstream_revision"]) == ("32.2.0", 2, record["upstream_revision"])
    assert nova["sbom"]["sha256"] == record["sbom"]["sha256"]
    assert data["services"]["glance"]["status"] == "missing"
    assert data["service_defaults"]["glance"] == {"wsgi": True, "api_deployment": "httpd+WSGI"}


def test_service_defaults_become_labels(built, tmp_path, upstream):
    layout = demo_layout(tmp_path, upstream, base="service_defaults:\n  demo: {wsgi: true, api_deployment: httpd+WSGI}\n")
    (result,) = build_stage.build(layout.project(), "2025.2", ["demo"])
    labels = docker.from_env().api.inspect_image(result.record["image_id"])["Config"]["Labels"]
    assert labels["io.openstack-patches.default.wsgi"] == "true"
    assert labels["io.openstack-patches.default.api_deployment"] == "httpd+WSGI"
    _, data = manifest_stage.write(layout.project(), "2025.2")
    assert data["services"]["demo"]["defaults"] == {"wsgi": True, "api_deployment": "httpd+WSGI"}


def test_sbom_refuses_inputs_changed_since_the_build(built, tmp_path, upstream):
    layout = demo_layout(tmp_path, upstream)
    build_stage.build(layout.project(), "2025.2", ["demo"])
    sbom_file = sbom_stage.sbom_path(layout.project(), "2025.2", "demo")
    before = sbom_file.read_bytes()
    override = layout.root / "overrides" / "2025.2" / "constraints.txt"
    override.parent.mkdir(parents=True)
    override.write_text("six===1.17.0\n")
    with pytest.raises(SbomError, match="the effective constraints of 2025.2 changed since demo was built") as info:
        sbom_stage.generate(layout.project(), "2025.2", "demo")
    assert info.value.exit_code == SbomError.exit_code
    assert sbom_file.read_bytes() == before  # the old SBOM stays as it was
