"""Configuration loading: every malformed input gets one clear message and its exit code."""

from __future__ import annotations

import pytest

from pipeline.config import Settings
from pipeline.errors import ConfigError, UnknownComponentError, UnknownReleaseError

from conftest import invoke


def test_valid_release(layout):
    layout.release("2025.2", {"demo": "1.0.0", "oslo.messaging": "17.1.0"}, services=["demo"])
    rel = layout.project().release("2025.2")
    assert rel.services == ("demo",) and rel.libraries == ("oslo.messaging",)


def test_invalid_yaml_names_file_and_line(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    (layout.root / "releases" / "2025.2" / "source-refs.yaml").write_text('demo: "1.0.0"\nnova: [unclosed\n')
    with pytest.raises(ConfigError, match=r"source-refs.yaml:3:\d+: invalid YAML"):
        layout.project()


def test_numeric_ref_must_be_quoted(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    (layout.root / "releases" / "2025.2" / "source-refs.yaml").write_text("demo: 28.10\n")
    with pytest.raises(ConfigError, match="ref of 'demo' is 28.1, not a string") as info:
        layout.project()
    assert "quote it" in str(info.value)


@pytest.mark.parametrize("release_yaml,message", [
    ("services: [nope]\n", "service\\(s\\) nope have no ref"),
    ("servicez: [demo]\n", "unknown key\\(s\\) servicez"),
    ("services: demo\n", "services must be a list"),
    ("base: {colour: blue}\n", "unknown base key\\(s\\) colour"),
    ("python: '2.7'\n", "python must look like"),
])
def test_release_yaml_validation(layout, release_yaml, message):
    layout.release("2025.2", {"demo": "1.0.0"})
    (layout.root / "releases" / "2025.2" / "release.yaml").write_text(release_yaml)
    with pytest.raises(ConfigError, match=message):
        layout.project()


def test_unknown_release_and_component(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    project = layout.project()
    with pytest.raises(UnknownReleaseError, match="known releases: 2025.2"):
        project.release("2099.1")
    with pytest.raises(UnknownComponentError, match="components of 2025.2: demo"):
        project.component("2025.2", "nova")


def test_settings_validation(tmp_path):
    with pytest.raises(ConfigError, match="unknown pipeline setting"):
        Settings.from_mapping({"wrokdir": "x"}, root=tmp_path)
    with pytest.raises(ConfigError, match="source_mode"):
        Settings.from_mapping({"source_mode": "svn"}, root=tmp_path)
    settings = Settings.from_mapping({"git_base": "mirrors", "repos": {"nova": "https://example.org/nova.git"}}, root=tmp_path)
    assert settings.git_url("demo") == (tmp_path / "mirrors" / "demo").as_uri()
    assert settings.git_url("nova") == "https://example.org/nova.git"
    assert settings.workdir == tmp_path / "build"
    assert settings.pypi_name("placement") == "openstack-placement"


def test_shipped_releases_load():
    from pipeline.config import PROJECT_ROOT, load_project

    project = load_project(Settings.from_mapping({}, root=PROJECT_ROOT))
    assert set(project.releases) >= {"2025.1", "2025.2", "2026.1"}
    for rel in project.releases.values():
        assert set(rel.services) == {"nova", "neutron", "keystone", "glance", "cinder", "placement"}


@pytest.mark.parametrize("args,code,text", [
    (["fetch", "--release", "2099.1"], UnknownReleaseError.exit_code, "unknown release '2099.1'"),
    (["patch", "--release", "2025.2", "--component", "nova"], UnknownComponentError.exit_code, "unknown component 'nova'"),
])
def test_cli_exit_codes(layout, args, code, text):
    layout.release("2025.2", {"demo": "1.0.0"})
    result = invoke(layout, *args)
    assert result.returncode == code, result.stderr
    assert text in result.stderr and "Traceback" not in result.stderr


def test_cli_help_documents_every_flag():
    import subprocess

    from conftest import REPO_ROOT

    for name in ["fetch", "patch", "constraints", "patches.list", "patches.check"]:
        out = subprocess.run(["invoke", "-r", str(REPO_ROOT), "--help", name], capture_output=True, text=True, check=True).stdout
        options = [l for l in out.splitlines() if l.strip().startswith("-")]
        assert options and all(len(l.split(None, 1)) == 2 for l in options), out


def test_cli_settings_file(layout, tmp_path):
    layout.release("2025.2", {"demo": "1.0.0"})
    site = tmp_path / "site.yaml"
    site.write_text(f"pipeline:\n  workdir: {tmp_path / 'elsewhere'}\n")
    env = layout.invoke_env()
    del env["INVOKE_PIPELINE_WORKDIR"]
    import subprocess

    from conftest import REPO_ROOT

    result = subprocess.run(["invoke", "-r", str(REPO_ROOT), "-f", str(site), "constraints", "--release", "2025.2"],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "elsewhere" / "2025.2" / "upper-constraints.txt").exists()
