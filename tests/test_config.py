"""Configuration: every malformed input gets one clear message naming file and line, and its exit code."""

from __future__ import annotations

import subprocess

import pytest
from conftest import REPO_ROOT, invoke

from pipeline.core.errors import (
    ConfigError,
    UnknownComponentError,
    UnknownReleaseError,
    ValueTypeError,
)
from pipeline.core.releases import load_project
from pipeline.core.settings import PROJECT_ROOT, Settings


def test_valid_release(layout):
    layout.release("2025.2", {"demo": "1.0.0", "oslo.messaging": "17.1.0"}, services=["demo"])
    rel = layout.project().release("2025.2")
    assert rel.services == ("demo",) and rel.libraries == ("oslo.messaging",)


def test_invalid_yaml_names_file_and_line(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    (layout.root / "releases" / "2025.2" / "source-refs.yaml").write_text('demo: "1.0.0"\nnova: [unclosed\n')
    with pytest.raises(ConfigError, match=r"source-refs.yaml:3:\d+: invalid YAML"):
        layout.project()


def test_unquoted_numbers_are_refused_with_the_line(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    (layout.root / "releases" / "2025.2" / "source-refs.yaml").write_text('demo: "1.0.0"\nnova: 28.10\n')
    with pytest.raises(ValueTypeError) as info:
        layout.project()
    assert "source-refs.yaml:2: nova is the number 28.10" in str(info.value)
    assert 'quote it: nova: "28.10" (unquoted, YAML reads 28.10 as the number 28.1)' in str(info.value)
    (layout.root / "releases" / "2025.2" / "source-refs.yaml").write_text('demo: "1.0.0"\n')
    (layout.root / "releases" / "2025.2" / "release.yaml").write_text("services: [demo]\npython: 3.10\n")
    with pytest.raises(ValueTypeError, match=r'release\.yaml:2: python is the number 3\.10') as info:
        layout.project()
    assert info.value.exit_code == 6


@pytest.mark.parametrize("release_yaml,message", [
    ("services: [nope]\n", "service\\(s\\) nope have no ref"),
    ("servicez: [demo]\n", "unknown key\\(s\\) servicez"),
    ("services: demo\n", "services must be a list"),
    ("services: [demo]\nbase: {colour: blue}\n", "unknown base key\\(s\\) colour"),
    ("services: [demo]\npython: '2.7'\n", "python must look like"),
    ("services: [demo]\nconstraints_url: 5\n", "constraints_url is the number 5"),
    ("services: [demo]\nrelease_date: soon\n", "release_date must be a date"),
])
def test_release_yaml_validation(layout, release_yaml, message):
    layout.release("2025.2", {"demo": "1.0.0"})
    (layout.root / "releases" / "2025.2" / "release.yaml").write_text(release_yaml)
    with pytest.raises(ConfigError, match=message):
        layout.project()


def test_unknown_release_and_component(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    project = layout.project()
    with pytest.raises(UnknownReleaseError, match=r"known releases: 2025\.2"):
        project.release("2099.1")
    with pytest.raises(UnknownComponentError, match=r"components of 2025\.2: demo"):
        project.component("2025.2", "nova")


def test_settings_validation(tmp_path):
    with pytest.raises(ConfigError, match="unknown pipeline setting"):
        Settings.from_mapping({"wrokdir": "x"}, root=tmp_path)
    with pytest.raises(ConfigError, match="source_mode"):
        Settings.from_mapping({"source_mode": "svn"}, root=tmp_path)
    with pytest.raises(ValueTypeError, match=r"pipeline\.constraints_url .* is 5 \(int\), not a string"):
        Settings.from_mapping({"constraints_url": 5}, root=tmp_path)
    with pytest.raises(ValueTypeError, match="INVOKE_PIPELINE_OFFLINE='maybe' is not a boolean"):
        Settings.from_mapping({}, root=tmp_path, environ={"INVOKE_PIPELINE_OFFLINE": "maybe"})
    assert Settings.from_mapping({}, root=tmp_path, environ={"INVOKE_PIPELINE_OFFLINE": "false"}).offline is False
    settings = Settings.from_mapping({"git_base": "mirrors", "repos": {"nova": "https://example.org/nova.git"}}, root=tmp_path)
    assert settings.git_url("demo") == (tmp_path / "mirrors" / "demo").as_uri()
    assert settings.git_url("nova") == "https://example.org/nova.git"
    assert settings.workdir == tmp_path / "build" and settings.pypi_name("placement") == "openstack-placement"


def test_proxies_are_resolved_once(tmp_path):
    settings = Settings.from_mapping({}, root=tmp_path, environ={"HTTPS_PROXY": "http://u:pw@proxy:3128",
                                                                  "NO_PROXY": "localhost"})
    env = settings.network.tool_env()
    assert env["https_proxy"] == env["HTTPS_PROXY"] == "http://u:pw@proxy:3128" and env["NO_PROXY"] == "localhost"
    offline = Settings.from_mapping({"offline": True}, root=tmp_path)
    assert offline.network.tool_env()["UV_OFFLINE"] == "1"


def test_shipped_releases_load():
    project = load_project(Settings.from_mapping({}, root=PROJECT_ROOT))
    assert set(project.releases) >= {"2025.1", "2025.2", "2026.1"}
    for rel in project.releases.values():
        assert set(rel.services) == {"nova", "neutron", "keystone", "glance", "cinder", "placement", "horizon", "heat",
                                     "octavia", "barbican", "designate", "manila", "ironic", "magnum", "aodh",
                                     "ceilometer", "swift", "trove", "masakari", "watcher"}
        assert all(rel.refs[s] for s in rel.services)  # every service pinned in source-refs.yaml
        assert rel.release_date is not None


@pytest.mark.parametrize("args,code,text", [
    (["fetch", "--release", "2099.1"], 3, "unknown release '2099.1'"),
    (["patch", "--release", "2025.2", "--component", "nova"], 4, "unknown component 'nova'"),
    (["fetch", "--release", "2025.2", "--jobs", "abc"], 7, "--jobs 'abc' is not a number"),
    (["patches.list", "--format", "yaml"], 7, "--format 'yaml' is not known"),
    (["testapply", "--defer-tests", "--skip-tests"], 7, "exclude each other"),
])
def test_cli_exit_codes(layout, args, code, text):
    layout.release("2025.2", {"demo": "1.0.0"})
    result = invoke(layout, *args)
    assert result.returncode == code, result.stderr
    assert text in result.stderr and "Traceback" not in result.stderr


def test_cli_settings_file(layout, tmp_path):
    layout.release("2025.2", {"demo": "1.0.0"})
    site = tmp_path / "site.yaml"
    site.write_text(f"pipeline:\n  workdir: {tmp_path / 'elsewhere'}\n")
    env = layout.invoke_env()
    del env["INVOKE_PIPELINE_WORKDIR"]
    result = subprocess.run(["invoke", "-r", str(REPO_ROOT), "-f", str(site), "constraints", "--release", "2025.2"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "elsewhere" / "2025.2" / "upper-constraints.txt").exists()
