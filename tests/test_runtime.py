"""runtime.yaml: what images carry to run, the commands of their processes, bindep on real files.

The bindep files under tests/data/bindep are upstream's own (nova 32.2.0, keystone 28.0.0, cinder
27.0.0 sdists), evaluated with OpenStack's bindep for Debian bookworm.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from pipeline.core.errors import ConfigError, ValueTypeError
from pipeline.core.releases import load_release
from pipeline.core.runtime import VENV, bindep_packages, runtime_archive

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "bindep"


def release_copy(tmp_path: Path, runtime: str, defaults: str = "") -> Path:
    """The shipped 2025.2 release folder with another runtime.yaml (and service_defaults)."""
    directory = tmp_path / "2025.2"
    shutil.copytree(REPO / "releases" / "2025.2", directory)
    (directory / "runtime.yaml").write_text(runtime)
    if defaults:
        text = (directory / "release.yaml").read_text()
        start = text.index("service_defaults:")
        (directory / "release.yaml").write_text(text[:start] + defaults)
    return directory


def test_the_shipped_releases_declare_a_runtime_for_every_service():
    for name in ("2025.1", "2025.2", "2026.1"):
        rel = load_release(REPO / "releases" / name)
        for service in rel.services:
            runtime = rel.runtime.of(service)
            assert runtime.processes, f"{name} {service}: no process declared"
            assert {"pymysql", "python-memcached"} <= {p.value.lower() for p in runtime.python}
            assert {"uwsgi-core", "uwsgi-plugin-python3"} <= {p.value for p in runtime.packages}
            for process in runtime.processes:
                assert json.loads(process.label())["command"] == list(process.command)


def test_an_api_runs_behind_the_server_service_defaults_choose():
    rel = load_release(REPO / "releases" / "2025.2")
    keystone = rel.runtime.of("keystone").process("keystone-api")
    assert keystone.server == "uwsgi" and keystone.port == 5000
    assert keystone.command[:2] == ("uwsgi", "--plugin")
    assert keystone.command[7:9] == ("--module", "keystone.wsgi.api:application")
    glance = rel.runtime.of("glance")  # release.yaml: api_deployment httpd+WSGI
    assert glance.api_deployment == "httpd+WSGI"
    assert {"apache2-bin", "libapache2-mod-wsgi-py3"} <= {p.value for p in glance.packages}
    api = glance.process("glance-api")
    assert api.command == ("/usr/sbin/apache2", "-DFOREGROUND", "-f", "/usr/share/openstack-patches/glance-api-httpd.conf")
    config = api.httpd_config("3.11")
    assert f"WSGIScriptAlias / {VENV}/lib/python3.11/site-packages/glance/wsgi/api.py" in config
    assert "Listen 9292" in config and f"python-home={VENV}" in config
    assert [p.name for p in rel.runtime.of("nova").processes] == [
        "nova-api", "nova-metadata", "nova-conductor", "nova-scheduler", "nova-compute"]
    assert rel.runtime.of("nova").process("nova-compute").command == ("nova-compute",)


def test_where_each_declaration_comes_from_is_recorded_as_a_portable_path():
    rel = load_release(REPO / "releases" / "2025.2")
    ldap = next(p for p in rel.runtime.of("keystone").python if p.value == "python-ldap")
    assert ldap.where.startswith("releases/2025.2/runtime.yaml:")
    server = next(p for p in rel.runtime.of("glance").packages if p.value == "apache2-bin")
    assert "api_deployment" in server.where


@pytest.mark.parametrize(("runtime", "defaults", "message"), [
    ("services: {keystone: {processes: {keystone-api: {wsgi: 'keystone.wsgi.api:application'}}}}\n", "",
     "serves an API: give its port"),
    ("services: {keystone: {processes: {keystone-api: {wsgi: x, command: [y], port: 1}}}}\n", "",
     "needs either wsgi"),
    ("services: {keystone: {processes: {Bad_Name: {command: [y]}}}}\n", "", "must be lower-case"),
    ("services: {keystone: {python: ['PyMySQL>=1.0']}}\n", "", "only a name, extras and an exact pin"),
    ("services: {keystone: {packages: ['Not A Package']}}\n", "", "is not a Debian package name"),
    ("services: {zun: {}}\n", "", "not a service of the release"),
    ("defaults: {colour: blue}\n", "", "unknown key(s) colour"),
    ("services: {glance: {processes: {glance-api: {wsgi: 'glance.wsgi.api:application', port: 9292}}}}\n",
     "service_defaults:\n  glance: {api_deployment: httpd+ProxyPass}\n", "its own server behind the site's httpd"),
    ("services: {}\n", "service_defaults:\n  glance: {api_deployment: gunicorn}\n", "api_deployment is 'gunicorn'"),
])
def test_a_bad_declaration_is_refused_naming_the_file(tmp_path, runtime, defaults, message):
    directory = release_copy(tmp_path, runtime, defaults)
    with pytest.raises(ConfigError) as caught:
        load_release(directory)
    assert message in caught.value.message
    assert "runtime.yaml" in caught.value.message or "release.yaml" in caught.value.message


def test_a_port_that_is_not_a_number_is_a_type_error_with_its_line(tmp_path):
    directory = release_copy(tmp_path, "services:\n  keystone:\n    processes:\n      keystone-api: {command: [x], port: '5000'}\n")
    with pytest.raises(ValueTypeError, match=r"releases/2025.2/runtime.yaml:4: .*port number"):
        load_release(directory)


def test_bindep_on_upstream_files_keeps_what_runs_and_drops_what_builds_or_tests():
    exclude = tuple(load_release(REPO / "releases" / "2025.2").runtime.bindep_exclude)
    kept, dropped = bindep_packages((DATA / "nova-32.2.0.txt").read_text(), "bookworm", ("default",), exclude)
    assert kept == ["openssh-client", "openssl", "lsscsi"]  # platform:dpkg rules; [test] and [doc] rules are out
    assert {"mariadb-server", "libmariadb-dev-compat", "python3-all-dev", "postgresql"} <= set(dropped)
    kept, _ = bindep_packages((DATA / "cinder-27.0.0.txt").read_text(), "bookworm", ("default",), exclude)
    assert kept == ["thin-provisioning-tools", "cryptsetup-bin", "lsscsi", "qemu-utils", "cgroup-tools"]
    kept, dropped = bindep_packages((DATA / "keystone-28.0.0.txt").read_text(), "bookworm", ("default",), exclude)
    assert kept == [] and "libldap2-dev" in dropped
    # the test profile is another answer (and rpm-only rules never apply on Debian)
    kept, _ = bindep_packages((DATA / "nova-32.2.0.txt").read_text(), "bookworm", ("test",), ())
    assert "build-essential" in kept and "gcc" not in kept


def test_a_bindep_file_bindep_cannot_parse_is_a_config_error():
    with pytest.raises(ConfigError, match=r"bindep\.txt cannot be read"):
        bindep_packages("libfoo [platform:dpkg\n", "bookworm", ("default",), ())


def test_the_runtime_archive_holds_etc_var_lib_and_the_httpd_configuration_reproducibly():
    rel = load_release(REPO / "releases" / "2025.2")
    glance = rel.runtime.of("glance")
    data = runtime_archive(glance, "3.11")
    assert data == runtime_archive(glance, "3.11")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {m.name: m for m in archive.getmembers()}
        config = archive.extractfile("usr/share/openstack-patches/glance-api-httpd.conf").read().decode()
    assert members["etc/glance"].isdir() and (members["etc/glance"].uid, members["etc/glance"].mode) == (0, 0o755)
    assert (members["var/lib/glance"].uid, members["var/lib/glance"].gid, members["var/lib/glance"].mode) == \
        (42424, 42424, 0o750)
    assert config == glance.process("glance-api").httpd_config("3.11")
    keystone = runtime_archive(rel.runtime.of("keystone"), "3.11")
    with tarfile.open(fileobj=io.BytesIO(keystone)) as archive:
        assert archive.getnames() == ["etc", "var", "var/lib", "etc/keystone", "var/lib/keystone"]
        assert {m.mtime for m in archive.getmembers()} == {315532800}


def test_the_readme_lists_every_process_of_2025_2():
    """README's processes table ("Images that run in production") names each process of 2025.2, as runtime.yaml
    declares it, with its port."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("| service | process | command |")
    table = readme[start:readme.index("\n\n", start)].splitlines()[2:]
    listed = {(cells[1].strip(), cells[2].strip(" `")) for cells in (row.split("|") for row in table)}
    rel = load_release(REPO / "releases" / "2025.2")
    declared = {(s, p.name) for s in rel.services for p in rel.runtime.of(s).processes}
    assert listed == declared
    ports = {p.name: p.port for s in rel.services for p in rel.runtime.of(s).processes if p.port}
    for row in table:
        name = row.split("|")[2].strip(" `")
        assert (f" on :{ports.get(name)} " in row or row.endswith(f"on :{ports.get(name)} |")) == (name in ports), row
