"""Override parsing and merging on the real upper-constraints of 2025.1, 2025.2 and 2026.1; snapshots and caches."""

from __future__ import annotations

import pytest
from conftest import UPSTREAM_CONSTRAINTS, invoke

from pipeline.constraints import effective as constraints
from pipeline.constraints import overrides as overrides_module
from pipeline.constraints import upstream
from pipeline.core import locks
from pipeline.core.errors import (
    CacheCorruptError,
    ConfigError,
    FetchError,
    OverrideError,
)
from pipeline.core.releases import load_project
from pipeline.core.settings import PROJECT_ROOT, Settings


def real(release: str) -> str:
    return (UPSTREAM_CONSTRAINTS / f"{release}.txt").read_text()


def merged(release: str, overrides: str, built: dict | None = None):
    return overrides_module.merge(real(release), overrides_module.parse_overrides(overrides, "o"), built or {}, "o")


def pins(result, name: str) -> list[str]:
    return [line for line in result.lines if overrides_module.canonical_name(line) == name]


def applies_to(lines: list[str], python: str) -> list[str]:
    index = next(i for i, env in enumerate(overrides_module.ENVIRONMENTS)
                 if env["python_version"] == python and env["sys_platform"] == "linux")
    return [line for line in lines if index in overrides_module.applies(line.partition(";")[2].strip() or None)]


def test_override_without_marker_replaces_every_variant_in_place():
    upstream = real("2025.2").splitlines()
    first = next(i for i, line in enumerate(upstream) if line.startswith("keystonemiddleware==="))
    result = merged("2025.2", "keystonemiddleware===10.13.0\n")
    assert pins(result, "keystonemiddleware") == ["keystonemiddleware===10.13.0"]
    assert result.lines.index("keystonemiddleware===10.13.0") == first
    assert result.changes[0].action == "replaced" and len(result.changes[0].old) == 2


def test_marker_override_keeps_the_upstream_pin_for_the_other_pythons():
    """pyOpenSSL===25.0.0 for Python >= 3.12 must leave the release's Python 3.11 with its upstream pin."""
    upstream = pins(overrides_module.merge(real("2025.2"), [], {}), "pyopenssl")
    result = merged("2025.2", "pyOpenSSL===25.0.0;python_version>='3.12'\n")
    lines = pins(result, "pyopenssl")
    assert "pyOpenSSL===25.0.0;python_version>='3.12'" in lines
    assert [pin.split(";")[0] for pin in applies_to(lines, "3.11")] == [
        pin.split(";")[0] for pin in applies_to(upstream, "3.11")]
    assert [pin.split(";")[0] for pin in applies_to(lines, "3.12")] == ["pyOpenSSL===25.0.0"]
    assert result.changes[0].action == "replaced for some Pythons"


def test_marker_override_matching_one_upstream_variant_replaces_only_it():
    result = merged("2025.2", "keystonemiddleware===10.13.0;python_version>='3.10'\n")
    lines = pins(result, "keystonemiddleware")
    assert applies_to(lines, "3.9") == ["keystonemiddleware===10.10.0;python_version=='3.9'"]
    assert applies_to(lines, "3.11") == ["keystonemiddleware===10.13.0;python_version>='3.10'"]


def test_trailing_comment_is_a_reason_not_an_error():
    parsed = overrides_module.parse_overrides("# CVE-2026-23490\npyasn1===0.6.2                # replaces every pin\n", "o")
    assert parsed[0].text == "pyasn1===0.6.2"
    assert parsed[0].reason == "CVE-2026-23490 replaces every pin"


def test_readme_example_parses_to_what_it_says():
    """The README's example: a comment block and a trailing comment make the reason; a pin, a marker pin, a removal."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split("`overrides/<R>/constraints.txt`:", 1)[1].split("```", 2)[1]
    parsed = overrides_module.parse_overrides(block.split("\n", 1)[1], "README")
    assert [(o.line_no, o.name, o.text, o.version, o.marker, o.removal) for o in parsed] == [
        (3, "pyasn1", "pyasn1===0.6.2", "0.6.2", None, False),
        (4, "pyopenssl", "pyOpenSSL===25.0.0;python_version>='3.12'", "25.0.0", 'python_version >= "3.12"', False),
        (5, "six", "", None, None, True),
    ]
    assert [o.reason for o in parsed] == [
        "The comment block above an override is its recorded reason. CVE-2026-23490: DoS in the pyasn1 0.6.0 "
        "OID decoder replaces every pin of the package, or adds it",
        None,
        "removes every pin of the package",
    ]


@pytest.mark.parametrize("text,message", [
    ("PyYAML===6.0.1\npyyaml===6.0.2\n", "repeats PyYAML of line 1 under another spelling"),
    ("PyYAML===6.0.1\nPyYAML===6.0.1\n", "overlaps"),
    ("foo===1;python_version>='3.10'\nfoo===2;python_version>='3.11'\n", "overlaps"),
    ("foo===1\n-foo\n", "cannot be combined"),
])
def test_conflicting_overrides_are_refused(text, message):
    with pytest.raises(OverrideError, match=message) as info:
        overrides_module.parse_overrides(text, "overrides/2025.2/constraints.txt")
    assert "overrides/2025.2/constraints.txt:2:" in str(info.value) and info.value.exit_code == 5


def test_disjoint_markers_are_fine():
    result = merged("2025.2", "foo===1.0;python_version<'3.12'\nfoo===2.0;python_version>='3.12'\n")
    assert pins(result, "foo") == ["foo===1.0;python_version<'3.12'", "foo===2.0;python_version>='3.12'"]


@pytest.mark.parametrize("line", ["cryptography==44.0.1", "cryptography>=44", "cryptography", "crypto graphy===1",
                                  "cryptography[ssl]===44.0.1", "-", "--foo"])
def test_malformed_line_names_file_and_line(line):
    with pytest.raises(OverrideError) as info:
        overrides_module.parse_overrides(f"# ok\n\n{line}\n", "overrides/2025.2/constraints.txt")
    assert "overrides/2025.2/constraints.txt:3:" in str(info.value)


@pytest.mark.parametrize("spelling", ["oslo.messaging", "oslo_messaging", "Oslo.Messaging", "oslo-messaging"])
def test_names_match_canonically(spelling):
    assert pins(merged("2025.1", f"{spelling}===99.0.0\n"), "oslo-messaging") == [f"{spelling}===99.0.0"]


def test_removal_and_built_from_source():
    result = merged("2025.2", "-cryptography\n", {"oslo-messaging": "oslo.messaging"})
    names = {overrides_module.canonical_name(line) for line in result.lines}
    assert "cryptography" not in names and "oslo-messaging" not in names
    assert {c.name: c.why for c in result.changes}["oslo-messaging"] == "built from patched source (oslo.messaging)"
    with pytest.raises(OverrideError, match="built from patched source"):
        merged("2025.2", "oslo.messaging===17.1.1\n", {"oslo-messaging": "oslo.messaging"})


def test_negate():
    assert overrides_module.negate("python_version>='3.12'") == "python_version < '3.12'"
    assert overrides_module.negate("python_version>='3.10' and sys_platform=='linux'") == \
        "python_version < '3.10' or sys_platform != 'linux'"
    assert overrides_module.negate("python_version==='3.12'") is None


# --- the stage: snapshots, URLs, caches --------------------------------------------------


def stage(project, release="2025.2"):
    with locks.hold(project.layout.lock(release), "test"):
        return constraints.build(project, release)


def test_shipped_snapshots_build_with_no_network(tmp_path):
    """The shipped configuration: the snapshots make the default constraints_url unnecessary."""
    settings = Settings.from_mapping({"workdir": str(tmp_path / "build"), "cache_dir": str(tmp_path / "cache"),
                                      "constraints_url": "https://releases.invalid/{release}", "offline": True})
    project = load_project(settings)
    for release in project.releases:
        record = stage(project, release)
        fields, body = upstream.split_snapshot(project.layout.constraints_snapshot(release).read_text())
        assert body == real(release) and fields["sha256"] and "requirements" in fields["note"]
        assert record.upstream.startswith(f"releases/{release}/upper-constraints.txt")


def test_update_writes_a_header_naming_the_source(layout):
    layout.release("2025.1", {"demo": "1.0.0"})
    project = layout.project()
    path = upstream.update_snapshot(project, "2025.1", note="requirements at 19088b84dc74")
    text = path.read_text()
    assert text.startswith("# upper-constraints snapshot for OpenStack 2025.1")
    assert "# source: file://" in text and "# note: requirements at 19088b84dc74" in text
    assert upstream.split_snapshot(text)[1] == real("2025.1")
    path.write_text(text.replace("oslo.config===", "oslo.config===9"))
    with pytest.raises(ConfigError, match="does not match the sha256 in its header"):
        stage(layout.project(), "2025.1")


def test_unreachable_url_names_the_setting_and_the_command(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    with pytest.raises(FetchError) as info:
        stage(layout.project(constraints_url="http://127.0.0.1:9/{release}"))
    assert "constraints_url" in info.value.hint and "invoke constraints --release 2025.2 --update" in info.value.hint


@pytest.mark.parametrize("damage", ["", "voluptuous===0.15.2\nchardet===5", "voluptuous===0.15.2\noslo.mess"])
def test_truncated_cache_is_fetched_again_and_offline_says_corrupt(layout, tmp_path, damage, capfd):
    layout.release("2025.2", {"demo": "1.0.0"})
    served = tmp_path / "served"
    served.mkdir()
    (served / "2025.2.txt").write_text(real("2025.2"))
    url = f"file://{served}/{{release}}.txt"
    first = stage(layout.project(constraints_url=url))
    cached = next((layout.root.parent / "cache" / "constraints").glob("2025.2-*.txt"))
    cached.write_text(damage)
    with pytest.raises(CacheCorruptError, match="are corrupt"):
        stage(layout.project(constraints_url=url, offline=True))
    again = stage(layout.project(constraints_url=url))
    assert again.sha256 == first.sha256
    assert "downloading them again" in capfd.readouterr().err


def test_cli_bad_override(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    override = layout.root / "overrides" / "2025.2" / "constraints.txt"
    override.parent.mkdir(parents=True)
    override.write_text("cryptography===44.0.1\nCryptography===45.0.0;python_version>='3.12'\n")
    result = invoke(layout, "constraints", "--release", "2025.2")
    assert result.returncode == 5 and "overrides/2025.2/constraints.txt:2:" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (layout.root / "build" / "2025.2" / "upper-constraints.txt").exists()
