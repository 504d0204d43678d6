"""Images on a real Docker engine: keystone and nova of 2025.2 with the shipped patches, layers, SBOM, VEX, push.

The session fixture builds both once from the shipped configuration (bases
bootstrapped from Debian packages when no registry answers); the tests then
inspect and run the real images.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import urllib.request
from pathlib import Path

import docker
import pytest
from conftest import demo_layout, free_port, invoke, make_patch, serve_registry, shipped
from packaging.utils import canonicalize_name

from pipeline import build as build_stage
from pipeline.core.errors import ConfigError
from pipeline.core.files import read_json, sha256_file, sync_tree
from pipeline.core.releases import load_project
from pipeline.core.settings import PROJECT_ROOT
from pipeline.image import prepare as prepare_stage
from pipeline.provenance import inventory as inventory_stage
from pipeline.provenance import manifest as manifest_stage
from pipeline.provenance import sbom as sbom_stage
from pipeline.provenance import vex as vex_stage

pytestmark = pytest.mark.docker

SITE = "/var/lib/openstack/lib/python3.11/site-packages"
EXPECTED = {
    "keystone": {"version": "28.0.0", "entry": "keystone-manage --version",
                 "patched": ("keystone/auth/plugins/mapped.py", "response_data['expires_at'] = token.expires_at")},
    "nova": {"version": "32.2.0", "entry": "nova-manage --version",
             "patched": ("nova/network/neutron.py", "name_to_id = defaultdict(list)")},
}


def build(project, services, **kwargs):
    report = build_stage.build(project, "2025.2", services, **kwargs)
    error = report.first_error()
    if error is not None:
        raise error
    return {s: report.image(s) for s in services}


@pytest.fixture(scope="session")
def built(tmp_path_factory, cache):
    workdir = tmp_path_factory.mktemp("images") / "build"
    project = shipped(workdir, cache)
    return project, build(project, ["keystone", "nova"], jobs=2)


@pytest.fixture(scope="session")
def engine():
    return docker.from_env()


def run_in(engine, image: str, script: str) -> str:
    return engine.containers.run(image, ["sh", "-c", script], remove=True, stderr=True).decode()


@pytest.mark.parametrize("service", ["keystone", "nova"])
def test_smoke(built, engine, service):
    _, results = built
    image = results[service].record.tags[0]
    expected = EXPECTED[service]
    assert run_in(engine, image, "id -un").strip() == "openstack"
    assert run_in(engine, image, expected["entry"]).strip() == expected["version"]
    path, line = expected["patched"]
    assert line in run_in(engine, image, f"cat {SITE}/{path}")
    assert "def _declare_fallback_nondurable" in run_in(engine, image, f"cat {SITE}/oslo_messaging/_drivers/impl_rabbit.py")
    versions = run_in(engine, image, "python -c \"import importlib.metadata as m; "
                                     "print(m.version('oslo.messaging'), m.version('eventlet'))\"")
    assert versions.split() == ["17.1.0", "0.40.3"]  # 0.40.3: the constraint override of 2025.2
    leftovers = run_in(engine, image, "for p in gcc cc c++ make uv pip; do command -v $p; done; "
                                      "ls -d /build /layer /root/.cache /var/lib/openstack/CACHEDIR.TAG /var/lib/openstack/.lock "
                                      "/var/lib/apt/lists/*_Packages 2>/dev/null; true")
    assert leftovers.strip() == ""
    # Byte code was compiled where it runs: tracebacks name the real files.
    code = (f"import marshal, {service}.version as m; "
            "print(marshal.loads(open(m.__cached__,'rb').read()[16:]).co_filename)")
    assert run_in(engine, image, f"python -c \"{code}\"").strip() == f"{SITE}/{service}/version.py"
    # Every .pyc matches its source: none is compiled again at each import (stdlib and venv alike).
    imports = run_in(engine, image, f"python -v -c 'import {service}.version, email.message, asyncio, json' 2>&1")
    assert "email/__pycache__/message.cpython" in imports and "bytecode is stale" not in imports, \
        [line for line in imports.splitlines() if "stale" in line][:5]


RUNTIME_IMPORTS = {"keystone": "ldap, ldappool", "nova": "libvirt"}


@pytest.mark.parametrize("service", ["keystone", "nova"])
def test_an_image_carries_what_production_needs(built, engine, service):
    """runtime.yaml: the database driver, memcached clients and extras; uWSGI and the service's Debian packages;
    /etc/<service> and /var/lib/<service>; its processes' commands as labels; no Windows scripts."""
    _, results = built
    record = results[service].record
    image = record.image_id
    out = run_in(engine, image, f"python -c 'import pymysql, memcache, pymemcache, {RUNTIME_IMPORTS[service]}; print(1)'"
                                f" && stat -c '%U %a %n' /etc/{service} /var/lib/{service}"
                                " && command -v uwsgi; command -v qemu-img; ls /var/lib/openstack/bin/*.bat /var/lib/openstack/bin/*.ps1"
                                " 2>/dev/null; true")
    lines = out.splitlines()
    assert lines[0] == "1"
    assert lines[1:3] == [f"root 755 /etc/{service}", f"openstack 750 /var/lib/{service}"]
    assert lines[3] == "/usr/bin/uwsgi" and (lines[4:] == ["/usr/bin/qemu-img"]) == (service == "nova")
    labels = engine.api.inspect_image(image)["Config"]["Labels"]
    processes = labels["io.openstack-patches.processes"].split(",")
    assert processes == ([f"{service}-api"] if service == "keystone" else
                         ["nova-api", "nova-metadata", "nova-conductor", "nova-scheduler", "nova-compute"])
    api = json.loads(labels[f"io.openstack-patches.process.{processes[0]}"])
    assert api["command"][0] == "uwsgi" and api["server"] == "uwsgi" and api["port"] in (5000, 8774)
    assert api["command"] == list(record.runtime["processes"][processes[0]]["command"])
    # what the record says it carries, and where each came from
    runtime = record.runtime
    assert runtime["python"]["pymysql"]["version"] == "1.1.1"
    assert runtime["python"]["pymysql"]["declared"].startswith("releases/2025.2/runtime.yaml:")
    assert runtime["debian"]["uwsgi-core"].startswith("releases/2025.2/runtime.yaml:")
    if service == "nova":  # from nova's own bindep.txt (the default profile on Debian)
        assert runtime["debian"]["openssh-client"] == "bindep.txt of nova (patched/2025.2/nova/bindep.txt)"
        assert "mariadb-server" in runtime["debian_excluded"]
        assert run_in(engine, image, "command -v ssh").strip() == "/usr/bin/ssh"
    # /etc/nova has the configuration files nova ships (its own, as patched), where nova-api looks for them
    if service == "nova":
        assert run_in(engine, image, "cmp /etc/nova/api-paste.ini /var/lib/openstack/etc/nova/api-paste.ini && echo same").strip() == "same"


def test_an_extension_whose_library_is_missing_is_named_with_where_to_declare_it(built, engine):
    """The SBOM reads every shared object's ELF dependencies: an image without python-ldap's libraries is refused."""
    import io

    from pipeline.core.errors import ImageContentError

    _, results = built
    record = results["keystone"].record
    dockerfile = (f"FROM {record.image_id}\nUSER root\nRUN rm -f /usr/lib/*/libldap-2.5.so.0* /usr/lib/*/liblber-2.5.so.0*"
                  " && ldconfig\nUSER openstack\n")
    image, _ = engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True)
    try:
        inventory = inventory_stage.read_inventory(engine.api, image.id)
        assert inventory.missing_libraries == {
            f"{SITE}/_ldap.cpython-311-x86_64-linux-gnu.so": ["libldap-2.5.so.0", "liblber-2.5.so.0"]}
        with pytest.raises(ImageContentError) as caught:
            inventory_stage.check_libraries(record, inventory)
        assert "_ldap.cpython-311-x86_64-linux-gnu.so: libldap-2.5.so.0, liblber-2.5.so.0" in caught.value.message
        assert "services.keystone.packages in releases/2025.2/runtime.yaml" in caught.value.hint
        assert inventory_stage.read_inventory(engine.api, record.image_id).missing_libraries == {}
    finally:
        engine.images.remove(image.id)


WHEEL_MAKER = """
import zipfile
with zipfile.ZipFile("/tmp/needy-1.0-py3-none-any.whl", "w") as wheel:
    wheel.writestr("needy/__init__.py", "VALUE = 1\\n")
    wheel.writestr("needy-1.0.dist-info/METADATA",
                   "Metadata-Version: 2.1\\nName: needy\\nVersion: 1.0\\nRequires-Dist: absent-dependency>=2\\n")
    wheel.writestr("needy-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n")
    wheel.writestr("needy-1.0.dist-info/RECORD", "")
"""


def test_the_check_stage_sees_what_uv_pip_check_reads_and_catches_a_missing_dependency(built, engine):
    """venv-layer keeps METADATA and WHEEL of each added distribution for the check: not RECORD, which a code change alters."""
    _, results = built
    script = (f"python3 -c '{WHEEL_MAKER}' && venv-layer --move /layer uv pip install -q --no-deps --no-index "
              "/tmp/needy-1.0-py3-none-any.whl && (cd /layer-meta && find . -type f | sort) && cp -a /layer-meta/. / "
              "&& uv pip check 2>&1; echo rc=$?")
    out = run_in(engine, results["keystone"].record.bases["build"], script)
    site = "./var/lib/openstack/lib/python3.11/site-packages/needy-1.0.dist-info"
    assert out.splitlines()[:2] == [f"{site}/METADATA", f"{site}/WHEEL"]
    assert "requires `absent-dependency>=2`, but it's not installed" in out and out.rstrip().endswith("rc=1")


def test_images_share_the_release_layers_and_add_only_their_own(built, engine):
    project, results = built
    layers = {s: engine.api.inspect_image(r.record.image_id)["RootFS"]["Layers"] for s, r in results.items()}
    for service, result in results.items():
        base = engine.api.inspect_image(result.record.bases["release_layer_id"])["RootFS"]["Layers"]
        assert layers[service][: len(base)] == base
        # its own Debian packages (if any), its runtime files, its own dependencies, oslo.messaging and the
        # service (each of the two with its byte code)
        own_packages = any(layer["name"] == "Debian packages" for layer in result.record.layers)
        assert len(layers[service]) == len(base) + own_packages + 4
    keystone = results["keystone"].record
    names = [layer["name"] for layer in keystone.layers]
    # the release levels keystone is in (the release's services sharing each, fewer at each level), then its own
    assert re.fullmatch(r"release level 0 \(\d+ services\): Debian packages", names[0])
    assert names[-5:] == ["Debian packages", "runtime files", "dependencies", "library oslo.messaging", "service"]
    found = [re.fullmatch(r"release level (\d+) \((\d+) services\)(: Debian packages)?", n) for n in names[:-5]]
    assert all(found), names
    levels = [m.group(0) for m in found if m and not m.group(3)]
    counts = [int(m.group(2)) for m in found if m and not m.group(3)]
    assert len(counts) >= 2 and counts == sorted(counts, reverse=True), names
    assert {layer["name"] for layer in results["nova"].record.layers} >= set(names[:-5])
    keystone_only = set(layers["keystone"]) - set(layers["nova"])
    # its Debian packages, its runtime files (/etc/keystone), its own dependencies and itself; the release
    # levels and oslo.messaging's layer are shared
    assert len(keystone_only) == 4
    level0 = {p.split("==")[0] for p in next(layer for layer in keystone.layers
                                             if layer["name"] == levels[0])["packages"]}
    shared = {p.split("==")[0] for layer in keystone.layers if layer["name"] in levels for p in layer["packages"]}
    # what every service of the release needs is in level 0, what most need in the levels above; keystone's own
    # stays its own
    assert "oslo-config" in level0 and "sqlalchemy" in shared - level0 and "pysaml2" not in shared
    levels = json.loads((project.layout.release_layer_dir("2025.2") / "layers.json").read_text())["levels"]
    assert [len(level["services"]) for level in levels] == sorted((len(level["services"]) for level in levels), reverse=True)


def test_no_secret_and_no_build_input_reaches_any_image(built, engine):
    project, results = built
    refs = [results[s].record.image_id for s in results]
    bases = results["keystone"].record.bases
    refs += [bases["runtime_id"], bases["build_id"], bases["release_layer_id"]]
    for ref in refs:
        history = json.dumps(engine.api.history(ref))
        inspected = json.dumps(engine.api.inspect_image(ref)["Config"])
        for text in (history, inspected):
            assert project.network.index_url not in text
            assert "INDEX_URL" not in text and "SSL_CERT_FILE" not in text and "PIP_CERT" not in text
    final = engine.api.inspect_image(results["nova"].record.image_id)["Config"]
    assert not any(e.startswith(("UV_", "PIP_", "SSL_")) for e in final["Env"])


def test_record_is_complete_relative_and_written_once(built, engine):
    project, results = built
    record = results["nova"].record
    path = project.layout.image_record("2025.2", "nova")
    assert json.loads(path.read_text()) == record.to_json()
    assert re.fullmatch(r"openstack-patches/nova:32\.2\.0-p2-[0-9a-f]{12}", record.tags[0])
    assert [p["component"] for p in record.patches] == ["oslo.messaging", "nova"]
    for patch in record.patches:
        assert patch["sha256"] == sha256_file(PROJECT_ROOT / patch["file"])
    assert set(record.sources) == {"nova", "oslo.messaging"} and record.sources["nova"]["method"] == "sdist"
    text = path.read_text()
    assert str(project.settings.workdir) not in text and str(PROJECT_ROOT) not in text
    labels = engine.api.inspect_image(record.image_id)["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == "32.2.0"
    assert labels["org.opencontainers.image.source"].endswith("nova-32.2.0.tar.gz")
    assert not any(re.search(r"\d{4}-\d\d-\d\dT", v) for v in labels.values())
    assert oct(path.stat().st_mode & 0o777) == "0o644"  # the process umask, not 0600


def test_rerun_makes_no_build_call(built):
    project, results = built
    again = build(load_project(project.settings), ["keystone", "nova"])
    assert [(r.action, r.build_calls) for r in again.values()] == [("up to date", 0), ("up to date", 0)]
    assert [r.record.image_id for r in again.values()] == [r.record.image_id for r in results.values()]


def test_a_build_stacks_only_the_release_levels_of_its_services(built):
    project, _results = built
    record = project.layout.release_layer_dir("2025.2") / "layers.json"
    build(load_project(project.settings), ["keystone", "nova"])  # the record of a build of both, whatever ran before
    both = json.loads(record.read_text())["levels"]
    assert all("nova" in level["services"] for level in both)  # nova is in every group: its build made them all
    again = build(load_project(project.settings), ["keystone"])["keystone"]
    assert (again.action, again.build_calls) == ("up to date", 0)
    alone = json.loads(record.read_text())["levels"]
    # (every level of a keystone and nova build may hold keystone: the release's twenty services share much)
    assert alone == [level for level in both if "keystone" in level["services"]] and 0 < len(alone) <= len(both)
    assert alone[-1]["image_id"] == again.record.bases["release_layer_id"]


# --- SBOM, VEX, manifest -------------------------------------------------------------------


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("service", ["keystone", "nova"])
def test_sbom_and_vex_are_valid_cyclonedx_1_6(built, service):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    project, results = built
    for path in (project.layout.sbom_file("2025.2", service), project.layout.vex_file("2025.2", service)):
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(path.read_text()) is None
    doc = load(project.layout.sbom_file("2025.2", service))
    record = results[service].record
    meta = doc["metadata"]["component"]
    assert meta["type"] == "container" and f"{meta['name']}:{meta['version']}" == record.tags[0]
    own = read_json(project.layout.sbom_record("2025.2", service))
    assert own["sha256"] == sha256_file(project.layout.sbom_file("2025.2", service))
    assert own["image_id"] == record.image_id and "sbom" not in record.to_json()  # each stage its own record


@pytest.mark.parametrize("service,component", [("nova", "nova"), ("nova", "oslo.messaging"), ("keystone", "keystone")])
def test_pedigree_is_the_record(built, service, component):
    project, results = built
    doc = load(project.layout.sbom_file("2025.2", service))
    entry = next(c for c in doc["components"] if canonicalize_name(c["name"]) == canonicalize_name(component))
    files = sorted((PROJECT_ROOT / "patches" / component / "2025.2").glob("*.patch"))
    patches = entry["pedigree"]["patches"]
    assert [p["diff"]["url"] for p in patches] == [str(f.relative_to(PROJECT_ROOT)) for f in files]
    assert [p["diff"]["text"]["content"] for p in patches] == [f.read_text() for f in files]
    assert all(p["type"] == "backport" for p in patches)
    source = results[service].record.sources[component]
    ancestor = entry["pedigree"]["ancestors"][0]
    assert ancestor["version"] == source["version"]
    refs = {r["type"]: r for r in ancestor["externalReferences"]}
    assert refs["vcs"]["url"] == f"https://opendev.org/openstack/{component}"
    assert refs["distribution"]["hashes"][0]["content"] == source["sdist_sha256"]
    props = {p["name"]: p["value"] for p in entry["properties"]}
    assert props["openstack-patches:layer"] in ("service", f"library {component}")


def test_sbom_cve_bug_and_override_properties(built):
    project, _ = built
    nova = load(project.layout.sbom_file("2025.2", "nova"))
    entry = next(c for c in nova["components"] if c["name"] == "nova")
    (bug,) = entry["pedigree"]["patches"][0]["resolves"]
    assert (bug["type"], bug["id"]) == ("defect", "2105896")
    eventlet = next(c for c in nova["components"] if c["name"] == "eventlet")
    props = {p["name"]: p["value"] for p in eventlet["properties"]}
    assert props["openstack-patches:constraint:upstream"] == "eventlet===0.40.2"
    assert props["openstack-patches:constraint:effective"] == "eventlet===0.40.3"
    assert "request smuggling" in props["openstack-patches:constraint:reason"]
    keystone = load(project.layout.sbom_file("2025.2", "keystone"))
    entry = next(c for c in keystone["components"] if c["name"] == "keystone")
    (cve,) = entry["pedigree"]["patches"][2]["resolves"]
    assert (cve["type"], cve["id"]) == ("security", "CVE-2026-44394")


def test_vex_resolves_the_backported_cve(built):
    project, _results = built
    vex = load(project.layout.vex_file("2025.2", "keystone"))
    # Among the advisories' statements when their sources are reachable (tests/test_advisories.py checks those).
    vuln = next(v for v in vex["vulnerabilities"] if v["id"] == "CVE-2026-44394")
    assert vuln["analysis"]["state"] == "resolved_with_pedigree"
    assert "patches/keystone/2025.2/0003-" in vuln["analysis"]["detail"]
    serial = load(project.layout.sbom_file("2025.2", "keystone"))["serialNumber"].removeprefix("urn:uuid:")
    assert vuln["affects"][0]["ref"] == f"urn:cdx:{serial}/1#pkg:pypi/keystone@28.0.0"
    assert not [v for v in load(project.layout.vex_file("2025.2", "nova")).get("vulnerabilities", [])
                if v["analysis"]["state"] == "resolved_with_pedigree"]


def test_sbom_lists_exactly_what_is_installed(built, engine):
    project, results = built
    doc = load(project.layout.sbom_file("2025.2", "keystone"))
    in_sbom = {(canonicalize_name(c["name"]), c["version"]) for c in doc["components"] if c["purl"].startswith("pkg:pypi/")}
    listing = run_in(engine, results["keystone"].record.image_id,
                     "python -c \"import importlib.metadata as m, json; "
                     "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))\"")
    in_image = {(canonicalize_name(n), v) for n, v in json.loads(listing)}
    assert in_sbom == in_image and len(in_image) > 50


def test_sbom_and_vex_are_reproducible_and_ignore_later_settings(built, tmp_path):
    project, _results = built
    paths = [project.layout.sbom_file("2025.2", "keystone"), project.layout.vex_file("2025.2", "keystone")]
    before = [p.read_bytes() for p in paths]
    for p in [*paths, project.layout.sbom_record("2025.2", "keystone"), project.layout.vex_record("2025.2", "keystone")]:
        p.unlink()
    moved = shipped(project.settings.workdir, project.settings.cache_dir, git_base="https://mirror.example/openstack")
    sbom_stage.generate(moved, "2025.2", "keystone")
    vex_stage.generate(moved, "2025.2", "keystone")
    assert [p.read_bytes() for p in paths] == before  # what was built, not what is configured now


def test_manifest(built):
    project, results = built
    path, data = manifest_stage.write(project, "2025.2")
    nova = data["services"]["nova"]
    record = results["nova"].record
    assert nova["image"] == record.tags[0] and nova["image_id"] == record.image_id
    assert (nova["version"], nova["patches"]) == ("32.2.0", 2)
    assert nova["sbom"]["sha256"] == sha256_file(project.layout.sbom_file("2025.2", "nova"))
    assert nova["sbom"]["path"] == "2025.2/nova/sbom.cdx.json" and nova["vex"]["path"] == "2025.2/nova/vex.cdx.json"
    assert data["services"]["glance"]["status"] == "missing"
    assert str(project.settings.workdir) not in path.read_text()


# --- a small service: failures, defaults, library closure ------------------------------------


def test_failing_step_names_service_step_and_log_and_removes_its_outputs(built, tmp_path, upstream, cache):
    layout = demo_layout(tmp_path, upstream, cache)
    build(layout.project(), ["demo"])
    service_dir = layout.root / "build" / "2025.2" / "demo"
    assert (service_dir / "sbom.cdx.json").exists()
    layout.add_patch("demo", "2025.2", "0001-break.patch", make_patch(
        upstream.path, lambda r: (r / "pyproject.toml").write_text((r / "pyproject.toml").read_text()
                                                                   .replace("setuptools.build_meta", "no.such.backend")), "break"))
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo")
    assert result.returncode == 42 and "Traceback" not in result.stderr
    # The patched tree no longer builds: the wheel step says so and names its log.
    assert "wheel demo (2025.2): building the wheel of the patched tree failed" in result.stderr
    assert "build/2025.2/wheels/demo.log" in result.stderr
    assert not any((service_dir / n).exists() for n in ("image.json", "sbom.cdx.json", "sbom.json", "vex.cdx.json"))


def test_service_defaults_become_labels(built, tmp_path, upstream, cache, engine):
    layout = demo_layout(tmp_path, upstream, cache, "service_defaults:\n  demo: {wsgi: true, api_deployment: httpd+WSGI}\n")
    result = build(layout.project(), ["demo"])["demo"]
    labels = engine.api.inspect_image(result.record.image_id)["Config"]["Labels"]
    assert labels["io.openstack-patches.default.wsgi"] == "true"
    _, data = manifest_stage.write(layout.project(), "2025.2")
    assert data["services"]["demo"]["defaults"] == {"wsgi": True, "api_deployment": "httpd+WSGI"}


def test_no_engine(tmp_path, upstream, cache):
    layout = demo_layout(tmp_path, upstream, cache)
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo",
                    env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert result.returncode == 40 and f"no Docker engine answers at unix://{tmp_path}/no-engine.sock" in result.stderr
    assert "Traceback" not in result.stderr and not (layout.root / "build" / "2025.2").exists()


def test_base_cannot_be_pulled(tmp_path, upstream, cache):
    layout = demo_layout(tmp_path, upstream, cache, "base: {image: 'registry.invalid/nothing:1', bootstrap: pull}\n")
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo")
    assert result.returncode == 41 and "cannot pull base image registry.invalid/nothing:1" in result.stderr


# --- push --------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path):
    with serve_registry(tmp_path / "registry") as address:
        yield address


def test_push_to_a_loopback_registry_and_a_failed_push(built, registry, engine):
    project, _results = built
    with pytest.raises(ConfigError, match="--push needs a registry"):
        build_stage.build(project, "2025.2", ["keystone"], push=True)
    pushing = shipped(project.settings.workdir, project.settings.cache_dir, registry=registry)
    result = build(pushing, ["keystone"], push=True)["keystone"]
    tags = urllib.request.urlopen(f"http://{registry}/v2/openstack-patches/keystone/tags/list").read().decode()
    assert result.record.tags[0].split(":")[1] in tags and "2025.2" in tags
    pushed = read_json(project.layout.push_record("2025.2", "keystone"))
    assert set(pushed["digests"]) == {f"{registry}/{t}" for t in result.record.tags}
    closed = f"127.0.0.1:{free_port()}"
    failing = shipped(project.settings.workdir, project.settings.cache_dir, registry=closed)
    report = build_stage.build(failing, "2025.2", ["keystone"], push=True)
    assert report.first_error().exit_code == 43
    assert not project.layout.push_record("2025.2", "keystone").exists()
    assert not [t for t in engine.api.inspect_image(result.record.image_id)["RepoTags"] if t.startswith(closed)]


def test_a_tree_layer_is_its_wheel_installed_into_the_image_venv(built, engine):
    """keystone's real wheel (scripts, data files, dist-info) and the byte code of its modules as the archive its
    image ADDs: one owner, one mtime."""
    import tarfile

    from pipeline.image import tree_layer
    from pipeline.image.bases import BaseImages
    from pipeline.image.wheels import Target
    from pipeline.patches import series

    project, results = built
    record = results["keystone"].record
    bases = BaseImages(**{k: record.bases[k] for k in ("origin", "runtime", "runtime_id", "build", "build_id")})
    tree = next(p for p in series.patch(project, "2025.2", ("keystone",), 1) if p.component == "keystone")

    def layer_of():
        return prepare_stage.layer_of(project, tree, Target.of("3.11", "x86_64", "bookworm"), engine.api, bases)

    layer = layer_of()
    # What the image was built from, and the image's own record of it: the archive's sha256 is the layer's diff ID.
    assert {**layer.to_dict(), "diff_id": f"sha256:{layer.sha256}"} == record.tree_layers["keystone"]
    assert record.tree_layers["keystone"]["diff_id"] in engine.api.inspect_image(record.image_id)["RootFS"]["Layers"]
    assert layer.dist_info == "keystone-28.0.0.dist-info"
    with tarfile.open(layer.archive) as archive:
        members = archive.getmembers()
        files = {m.name: m for m in members}
        assert [m.name for m in members] == sorted(files, key=lambda name: name.split("/"))  # as the engine walks
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "root", "root", tree_layer.EPOCH)}
        assert {m.mode for m in members if m.isdir()} == {0o40755}  # the file type in the mode, as the engine writes it
        script = files["var/lib/openstack/bin/keystone-manage"]
        assert script.mode == 0o100755 and archive.extractfile(script).readline() == b"#!/var/lib/openstack/bin/python\n"
        assert "var/lib/openstack/etc/keystone/sso_callback_template.html" in files  # a data file, under the venv
        dist_info = f"{SITE[1:]}/keystone-28.0.0.dist-info"
        assert archive.extractfile(files[f"{dist_info}/INSTALLER"]).read() == b"openstack-patches\n"
        assert f"{dist_info}/REQUESTED" in files and f"{dist_info}/direct_url.json" not in files
        recorded = {line.split(",")[0] for line in archive.extractfile(files[f"{dist_info}/RECORD"]).read().decode().splitlines()}
        installed = {name for name, m in files.items() if m.isfile() and "/__pycache__/" not in name
                     and not name.startswith("etc/")}
        # the data files under the venv's etc/ are where keystone looks for them too
        assert {name for name, m in files.items() if m.isfile() and name.startswith("etc/")} == \
            {name.removeprefix("var/lib/openstack/") for name in installed if name.startswith("var/lib/openstack/etc/")}
        prefix = SITE[1:] + "/"
        assert {name.removeprefix(prefix) if name.startswith(prefix) else f"../../../{name.split('/', 3)[3]}"
                for name in installed} == recorded
        # Every module has its byte code (as uv compiles: not the scripts), and nothing else is compiled.
        modules = sorted(n for n in installed if n.startswith(prefix) and n.endswith(".py"))
        compiled = sorted(n for n, m in files.items() if m.isfile() and n.endswith(".pyc"))
        assert compiled == sorted(f"{n.rpartition('/')[0]}/__pycache__/{n.rpartition('/')[2][:-3]}.cpython-311.pyc"
                                  for n in modules)
        assert layer.bytecode == len(modules) > 500
        # What is compiled while the wheel builds is a guess from the tree: on keystone it is exactly what the wheel installs.
        from pipeline.image.bytecode import package_modules
        assert sorted(package_modules(project.layout.resolve(tree.tree), SITE)) == [f"/{n}" for n in modules]
        version_pyc = archive.extractfile(files[f"{prefix}keystone/__pycache__/version.cpython-311.pyc"]).read()
    with tarfile.open(layer.metadata_archive) as archive:
        assert [m.name for m in archive.getmembers() if m.isfile()] == [f"{dist_info}/METADATA", f"{dist_info}/WHEEL"]
    # The byte code is what the image's own Python makes of the module where it lies (as a build step would).
    in_place = run_in(engine, record.tags[0], "PYTHONHASHSEED=0 python -S -c 'import py_compile; "
                      f"py_compile.compile(\"{SITE}/keystone/version.py\", cfile=\"/tmp/v.pyc\", "
                      "invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP); "
                      "print(open(\"/tmp/v.pyc\", \"rb\").read().hex())'")  # a line: the engine may drop a last partial one
    assert bytes.fromhex(in_place.strip()) == version_pyc
    # The same wheel gives the same bytes, from the byte code cache alone; a damaged archive is made again.
    shutil.rmtree(layer.directory)
    assert prepare_stage.layer_of(project, tree, Target.of("3.11", "x86_64", "bookworm"), None, bases) == layer
    layer.archive.write_bytes(b"damaged")
    assert tree_layer.read_verified(layer_of())["layer.tar"] == layer.archive.read_bytes()
    assert sha256_file(layer.archive) == layer.sha256


def test_an_image_the_sbom_cannot_read_is_an_sbom_error_naming_it(built, engine):
    """No venv Python in the image, or no such image on the engine: exit 50, the image named, no traceback."""
    _, results = built
    runtime = results["keystone"].record.bases["runtime_id"]
    for image, hint in [(runtime, "/var/lib/openstack/bin/python"), ("sha256:" + "0" * 64, "docker info")]:
        with pytest.raises(sbom_stage.SbomError) as error:
            inventory_stage.read_inventory(engine.api, image)
        assert error.value.exit_code == 50 and f"image {image[:19]}" in error.value.message
        assert hint in error.value.hint


def test_the_throw_away_containers_of_a_killed_run_on_this_host_are_removed_by_the_next(built, engine):
    """kill -9 skips a helper container's removal: the next helper run removes those whose run is dead, and no other."""
    import os
    import socket
    import subprocess

    from pipeline.image.engine import TEMPORARY, run_with_files

    _, results = built
    runtime = results["keystone"].record.bases["runtime_id"]
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    made = {owner: engine.api.create_container(runtime, ["true"], labels={TEMPORARY: owner})["Id"]
            for owner in (f"{host}:{dead.pid}", f"{host}:{os.getpid()}", f"another-host:{dead.pid}")}
    try:
        assert run_with_files(engine.api, runtime, ["sh", "-c", "echo ok"], "demo")[0] == b"ok\n"
        left = {c["Id"] for c in engine.api.containers(all=True, filters={"label": TEMPORARY})}
        assert {owner for owner, cid in made.items() if cid in left} == {f"{host}:{os.getpid()}", f"another-host:{dead.pid}"}
    finally:
        for cid in made.values():
            with contextlib.suppress(docker.errors.NotFound):
                engine.api.remove_container(cid, force=True)


def test_the_byte_code_cache_compiles_what_it_lacks_once_and_a_module_that_does_not_compile_has_none(built, engine, tmp_path):
    from pipeline.image.bytecode import ByteCode

    _, results = built
    runtime = results["keystone"].record.bases["runtime_id"]
    sources = {f"{SITE}/mod/__init__.py": b"VALUE = 1\n", f"{SITE}/mod/broken.py": b"def (:\n"}
    first = ByteCode(engine.api, runtime, "3.11", tmp_path, 315532800).compiled(sources)
    assert list(first) == [f"{SITE}/mod/__pycache__/__init__.cpython-311.pyc"]
    pyc = first[f"{SITE}/mod/__pycache__/__init__.cpython-311.pyc"]
    assert int.from_bytes(pyc[8:12], "little") == 315532800 and int.from_bytes(pyc[12:16], "little") == 10
    assert ByteCode(None, runtime, "3.11", tmp_path, 315532800).compiled(sources) == first  # no engine needed
    entries = sorted(p.name for p in tmp_path.rglob("*") if p.suffix in (".pyc", ".none"))
    assert [name.rpartition(".")[2] for name in entries] == sorted(["pyc", "none"])
    changed = ByteCode(engine.api, runtime, "3.11", tmp_path, 315532800).compiled(
        {**sources, f"{SITE}/mod/__init__.py": b"VALUE = 2\n"})
    assert changed[f"{SITE}/mod/__pycache__/__init__.cpython-311.pyc"] != pyc
    assert len([p for p in tmp_path.rglob("*") if p.suffix in (".pyc", ".none")]) == 3  # only the changed one added


def test_a_tree_s_layer_is_the_same_after_a_forced_rebuild_and_holds_its_byte_code(tmp_path, upstream, cache, engine):
    import io
    import tarfile

    from pipeline.image import tree_layer

    layout = demo_layout(tmp_path, upstream, cache)
    first = build(layout.project(), ["demo"])["demo"]
    again = build(layout.project(), ["demo"], force=True)["demo"]
    assert again.action == "built"
    layers = engine.api.inspect_image(first.record.image_id)["RootFS"]["Layers"]
    assert engine.api.inspect_image(again.record.image_id)["RootFS"]["Layers"] == layers
    with tarfile.open(fileobj=io.BytesIO(b"".join(engine.api.get_image(first.record.image_id)))) as saved:
        last = json.load(saved.extractfile("manifest.json"))[0]["Layers"][-1]  # the service's
        with tarfile.open(fileobj=saved.extractfile(last)) as layer:
            members = layer.getmembers()
    assert {m.mtime for m in members} == {tree_layer.EPOCH}
    compiled = sorted(m.name for m in members if m.isfile() and m.name.endswith(".pyc"))
    assert compiled == [f"{SITE[1:]}/demo/__pycache__/{name}.cpython-311.pyc" for name in ("__init__", "core")]
    assert not [m.name for m in members if not m.isdir() and not m.isfile()]  # no whiteout, no link


def test_tree_wheel_is_reproducible_and_a_damaged_one_is_built_again(tmp_path, upstream, cache):
    """The wheel of a patched tree: the same bytes when built again; a damaged cached one is never used."""
    from pipeline.image import tree_wheel
    from pipeline.image.wheels import Target
    from pipeline.patches import series

    layout = demo_layout(tmp_path, upstream, cache)
    project = layout.project()
    tree = next(p for p in series.patch(project, "2025.2", (), 1) if p.component == "demo")
    target = Target.of("3.11", "x86_64", "bookworm")
    first = prepare_stage.wheel_of(project, tree, target)
    assert first.path.name.endswith("-py3-none-any.whl") and [p.name for p in first.directory.iterdir()] == [first.path.name]
    shutil.rmtree(first.directory)  # as if never built
    first.directory.with_suffix(".json").unlink()
    again = prepare_stage.wheel_of(project, tree, target)
    assert again.sha256 == first.sha256 == sha256_file(again.path)
    again.path.write_bytes(b"damaged")
    # Found by its record (a lookup does not hash it), checked when a layer is made of it: built again.
    repaired = tree_wheel.verified(prepare_stage.wheel_of(project, tree, target))
    assert repaired.sha256 == first.sha256 == sha256_file(repaired.path)
    log = project.layout.tree_wheel_log("2025.2", "demo").read_text()
    assert "build_wheel" in log and "prepare_metadata_for_build_wheel" not in log  # one start of the backend fewer
    # The build tree is left as the backend wrote it; junk a killed build might leave is removed before the next.
    build_tree = project.layout.wheel_build_tree("2025.2", "demo")
    assert (build_tree / "demo.egg-info").is_dir() or list(build_tree.glob("*.egg-info"))
    (build_tree / "demo" / "leftover.py").write_text("raise SystemExit('stale')\n")
    (build_tree / "demo" / "core.py").write_text("broken")
    repaired.path.unlink()
    rebuilt = prepare_stage.wheel_of(project, tree, target)
    assert rebuilt.sha256 == first.sha256 and not (build_tree / "demo" / "leftover.py").exists()


def test_a_code_change_copies_only_the_changed_files_and_gives_the_wheel_a_fresh_build_gives(tmp_path, upstream, cache):
    """setuptools' build directory stays between builds when it can only hold what the next build makes."""
    import dataclasses
    import zipfile

    from pipeline.image.wheels import Target
    from pipeline.patches import series

    layout = demo_layout(tmp_path, upstream, cache)
    project = layout.project()
    tree = next(p for p in series.patch(project, "2025.2", (), 1) if p.component == "demo")
    target = Target.of("3.11", "x86_64", "bookworm")
    source = project.layout.resolve(tree.tree)
    build_lib = project.layout.wheel_build_tree("2025.2", "demo") / "build" / "lib" / "demo"

    def wheel_at(head: str):
        # Another head, as a changed patch gives: the tree's files are edited in place.
        return prepare_stage.wheel_of(project, dataclasses.replace(tree, head=head), target)

    def from_scratch(head: str) -> str:
        wheel = wheel_at(head)
        shutil.rmtree(wheel.directory)
        wheel.directory.with_suffix(".json").unlink()
        shutil.rmtree(build_lib.parent.parent)
        return wheel_at(head).sha256

    wheel_at("1" * 40)
    unchanged = (build_lib / "__init__.py").stat().st_ino
    (source / "demo" / "core.py").write_text((source / "demo" / "core.py").read_text() + "\nCHANGED = 1\n")
    (source / "demo" / "extra.py").write_text("EXTRA = 1\n")  # a file added: the build directory stays
    changed = wheel_at("2" * 40)
    log = project.layout.tree_wheel_log("2025.2", "demo")
    assert "get_requires_for_build_wheel" not in log.read_text()  # the configuration is as it was: asked once
    assert (build_lib / "__init__.py").stat().st_ino == unchanged  # not copied again
    assert "CHANGED = 1" in (build_lib / "core.py").read_text()
    with zipfile.ZipFile(changed.path) as archive:
        assert "CHANGED = 1" in archive.read("demo/core.py").decode() and "demo/extra.py" in archive.namelist()
    assert from_scratch("2" * 40) == changed.sha256

    (source / "demo" / "extra.py").unlink()  # a file lost: its copy must not ship
    removed = wheel_at("3" * 40)
    with zipfile.ZipFile(removed.path) as archive:
        assert "demo/extra.py" not in archive.namelist()
    assert from_scratch("3" * 40) == removed.sha256

    # A build killed in it leaves no marker: the next one starts from an empty build directory.
    (build_lib.parent.parent / ".openstack-patches-complete").unlink()
    (build_lib / "core.py").write_text("half written")
    (source / "README").write_text("changed\n")
    again = wheel_at("4" * 40)
    with zipfile.ZipFile(again.path) as archive:
        assert "CHANGED = 1" in archive.read("demo/core.py").decode()
    assert "get_requires_for_build_wheel" in log.read_text()  # a file at the top of the tree changed: asked again


def test_the_build_environment_is_made_once_and_again_after_a_killed_make(tmp_path, upstream, cache):
    """A code change builds in the environment the last build made; the wheel is the one a new environment gives."""
    import dataclasses

    from pipeline.image.tree_wheel import BUILD_COMPLETE, unmet
    from pipeline.image.wheels import Target
    from pipeline.patches import series

    layout = demo_layout(tmp_path, upstream, cache)
    project = layout.project()
    tree = next(p for p in series.patch(project, "2025.2", (), 1) if p.component == "demo")
    target = Target.of("3.11", "x86_64", "bookworm")
    log = project.layout.tree_wheel_log("2025.2", "demo")
    envs = project.layout.build_envs()
    shutil.rmtree(envs, ignore_errors=True)  # the session's cache may hold it: this test makes it

    def wheel_at(head: str):  # heads of this test alone: the session's cache holds other tests' wheels
        return prepare_stage.wheel_of(project, dataclasses.replace(tree, head=head * 20), target)

    def files(directory: Path) -> list[str]:
        return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))

    first = wheel_at("e1")
    assert " venv " in log.read_text()
    (env,) = envs.iterdir()
    assert (env / BUILD_COMPLETE).exists() and list(env.rglob("setuptools/__pycache__/*.pyc"))
    made = files(env)
    second = wheel_at("e2")
    assert " venv " not in log.read_text() and files(env) == made  # used as it was: nothing written in it
    assert second.sha256 == first.sha256  # same tree content, another head

    # A make killed half-way leaves no marker: the next build makes the environment again, from nothing.
    (env / BUILD_COMPLETE).unlink()
    (env / "half-written").write_text("")
    third = wheel_at("e3")
    assert " venv " in log.read_text() and files(env) == made and third.sha256 == first.sha256

    assert unmet(["setuptools", "setuptools>=1", "no-such-dist", "setuptools<1", "setuptools[core]",
                  "no-such-dist; python_version < '3'"], env) == ["no-such-dist", "setuptools<1", "setuptools[core]"]


def test_a_backend_that_asks_for_an_undeclared_requirement_gets_a_clear_message(tmp_path, upstream, cache):
    layout = demo_layout(tmp_path, upstream, cache)
    backend = ("from setuptools.build_meta import *\n\n\n"
               "def get_requires_for_build_wheel(config_settings=None):\n    return ['no-such-dist>=1']\n")
    layout.add_patch("demo", "2025.2", "0001-backend.patch", make_patch(upstream.path, lambda r: (
        (r / "in_tree_backend.py").write_text(backend),
        (r / "pyproject.toml").write_text((r / "pyproject.toml").read_text().replace(
            'build-backend = "setuptools.build_meta"', 'build-backend = "in_tree_backend"\nbackend-path = ["."]'))),
        "in-tree backend"))
    result = invoke(layout, "build", "--release", "2025.2", "--service", "demo")
    assert result.returncode == 42 and "Traceback" not in result.stderr, result.stderr
    assert ("wheel demo (2025.2): its build backend asks for no-such-dist>=1, which the tree's declared build "
            "requirements do not provide") in result.stderr
    assert "[build-system] requires" in result.stderr


def test_sync_tree_makes_an_exact_copy_writing_only_what_differs(tmp_path):
    source, dest = tmp_path / "source", tmp_path / "dest"
    (source / "pkg" / "sub").mkdir(parents=True)
    (source / "pkg" / "a.py").write_text("a = 1\n")
    (source / "pkg" / "sub" / "b.py").write_text("b = 2\n")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    (source / "link").symlink_to("pkg/a.py")
    (source / "dirlink").symlink_to("pkg")
    assert len(sync_tree(source, dest).written) == 5
    assert sync_tree(source, dest).written == ()  # nothing differs: nothing written
    # What a build leaves, and entries whose kind changed on either side.
    (dest / "build" / "lib").mkdir(parents=True)
    (dest / "build" / "lib" / "x.py").write_text("")
    (dest / "pkg" / "a.py").write_text("a = 3\n")
    (dest / "run.sh").chmod(0o644)
    (dest / "link").unlink()
    (dest / "link").write_text("not a link")
    shutil.rmtree(source / "pkg" / "sub")
    (source / "pkg" / "sub").write_text("now a file")
    (dest / "kept").mkdir()
    (dest / "kept" / "y.py").write_text("")
    sync = sync_tree(source, dest, keep=("kept", "pkg"))  # a kept name the source has is synced like any other
    assert sorted(sync.written) == ["link", "pkg/a.py", "pkg/sub"]
    # Removed: what the source lacks, and each replaced entry with what was below it.
    assert sorted(sync.removed) == ["build", "build/lib", "build/lib/x.py", "link", "pkg/sub", "pkg/sub/b.py"]
    assert (dest / "kept" / "y.py").exists()
    shutil.rmtree(dest / "kept")
    listing = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert listing == ["dirlink", "link", "pkg", "pkg/a.py", "pkg/sub", "run.sh"]
    assert (dest / "pkg" / "a.py").read_text() == "a = 1\n" and (dest / "pkg" / "sub").read_text() == "now a file"
    assert (dest / "link").is_symlink() and str((dest / "link").readlink()) == "pkg/a.py"
    assert (dest / "dirlink").is_symlink() and (dest / "run.sh").stat().st_mode & 0o777 == 0o755
