"""Override parsing and merging, on the real upper-constraints of 2025.1/2025.2/2026.1."""

from __future__ import annotations

import pytest

from pipeline import constraints
from pipeline.errors import OverrideError

from conftest import SHARED_CONSTRAINTS, invoke


def real(release: str) -> str:
    return (SHARED_CONSTRAINTS / f"{release}.txt").read_text()


def test_replace_every_marker_variant_in_place():
    upstream = real("2025.2")
    lines = upstream.splitlines()
    first = next(i for i, l in enumerate(lines) if l.startswith("keystonemiddleware==="))
    overrides = constraints.parse_overrides("keystonemiddleware===10.13.0\n", "o.txt")
    result = constraints.merge(upstream, overrides, {})
    assert [l for l in result.lines if l.lower().startswith("keystonemiddleware")] == ["keystonemiddleware===10.13.0"]
    assert result.lines.index("keystonemiddleware===10.13.0") == first
    change = result.changes[0]
    assert change.action == "replaced"
    assert change.old == ("keystonemiddleware===10.10.0;python_version=='3.9'",
                          "keystonemiddleware===10.12.1;python_version>='3.10'")


def test_untouched_lines_keep_order_and_text():
    upstream = real("2026.1")
    result = constraints.merge(upstream, constraints.parse_overrides("-six\n", "o"), {})
    expected = [l for l in upstream.splitlines() if not l.lower().startswith("six===")]
    assert list(result.lines) == expected


@pytest.mark.parametrize("spelling", ["oslo.messaging", "oslo_messaging", "Oslo.Messaging", "oslo-messaging"])
def test_dotted_names_match_canonically(spelling):
    result = constraints.merge(real("2025.1"), constraints.parse_overrides(f"{spelling}===99.0.0\n", "o"), {})
    pins = [l for l in result.lines if constraints.canonical_name(l) == "oslo-messaging"]
    assert pins == [f"{spelling}===99.0.0"]


def test_added_pin_goes_at_the_end_with_marker():
    result = constraints.merge(real("2025.2"), constraints.parse_overrides("brand-new===1.0;python_version>='3.10'\n", "o"), {})
    assert result.lines[-1] == "brand-new===1.0;python_version>='3.10'"
    assert result.changes[0].action == "added"


def test_removal_and_built_from_source():
    result = constraints.merge(real("2025.2"), constraints.parse_overrides("-cryptography\n", "o"),
                               {"oslo-messaging": "oslo.messaging"})
    names = {constraints.canonical_name(l) for l in result.lines}
    assert "cryptography" not in names and "oslo-messaging" not in names
    whys = {c.name: c.why for c in result.changes}
    assert whys["oslo-messaging"] == "built from patched source (oslo.messaging)"
    assert whys["cryptography"] == "override line 1"


def test_marker_variants_in_overrides_are_allowed():
    text = "foo===1.0;python_version<'3.12'\nfoo===2.0;python_version>='3.12'\n"
    result = constraints.merge("bar===1\nfoo===0.5\n", constraints.parse_overrides(text, "o"), {})
    assert result.lines == ("bar===1", "foo===1.0;python_version<'3.12'", "foo===2.0;python_version>='3.12'")


def test_reason_is_the_comment_above():
    overrides = constraints.parse_overrides("# header\n\n# CVE-2024-12797\n# fixed OpenSSL\ncryptography===44.0.1\n", "o")
    assert overrides[0].reason == "CVE-2024-12797 fixed OpenSSL"


@pytest.mark.parametrize("line", ["cryptography==44.0.1", "cryptography>=44", "cryptography", "crypto graphy===1",
                                  "cryptography[ssl]===44.0.1", "-", "--foo", "cryptography===1 ===2"])
def test_malformed_line_names_file_and_line(line):
    with pytest.raises(OverrideError) as info:
        constraints.parse_overrides(f"# ok\n\n{line}\n", "overrides/2025.2/constraints.txt")
    assert "overrides/2025.2/constraints.txt:3:" in str(info.value)
    assert info.value.exit_code == OverrideError.exit_code


@pytest.mark.parametrize("text", ["a===1\na===2\n", "a===1\n-a\n", "-A\nA===1\n"])
def test_conflicting_overrides(text):
    with pytest.raises(OverrideError, match=r"o:2: conflicts with line 1"):
        constraints.parse_overrides(text, "o")


def test_identical_duplicate_is_not_a_conflict():
    assert len(constraints.parse_overrides("a===1\na===1\n", "o")) == 2


def test_override_of_component_built_from_source_is_refused():
    with pytest.raises(OverrideError, match="built from patched source"):
        constraints.merge(real("2025.2"), constraints.parse_overrides("oslo.messaging===17.1.1\n", "o"),
                          {"oslo-messaging": "oslo.messaging"})


def test_stage_writes_effective_file_and_header(layout, tmp_path):
    layout.release("2025.2", {"demo": "1.0.0", "oslo.messaging": "17.1.0"}, services=["demo"])
    served = tmp_path / "served"
    served.mkdir()
    (served / "2025.2.txt").write_text(real("2025.2"))
    layout.settings_overrides["constraints_url"] = f"file://{served}/{{release}}.txt"
    override = layout.root / "overrides" / "2025.2" / "constraints.txt"
    override.parent.mkdir(parents=True)
    override.write_text("# newer crypto\ncryptography===44.0.1\n-six\nnew-pkg===1.0\n")
    project = layout.project()
    path, result = constraints.build(project, "2025.2")
    assert path == layout.root / "build" / "2025.2" / "upper-constraints.txt"
    text = path.read_text()
    head = [l for l in text.splitlines() if l.startswith("#")]
    assert any("replaced: cryptography" in l and "override line 2" in l for l in head)
    assert any("removed: six" in l for l in head)
    assert any("added: new-pkg" in l for l in head)
    assert any("removed: oslo-messaging" in l and "built from patched source" in l for l in head)
    body = [l for l in text.splitlines() if not l.startswith("#")]
    assert "cryptography===44.0.1" in body and "new-pkg===1.0" in body
    # The upstream URL content is cached: a second run works with the URL gone.
    (served / "2025.2.txt").unlink()
    assert constraints.build(layout.project(), "2025.2")[0].read_text() == text


def test_snapshot_is_preferred_and_update_refreshes_it(layout):
    layout.release("2025.1", {"demo": "1.0.0"})
    project = layout.project()
    snapshot = constraints.update_snapshot(project, "2025.1")
    assert snapshot == layout.root / "releases" / "2025.1" / "upper-constraints.txt"
    assert snapshot.read_text() == real("2025.1")
    snapshot.write_text("only===1.0\n")
    path, _ = constraints.build(layout.project(), "2025.1")
    assert path.read_text().splitlines()[-1] == "only===1.0"
    assert "releases/2025.1/upper-constraints.txt" in path.read_text()
    assert snapshot.read_text() == "only===1.0\n"  # never edited in place


def test_cli_bad_override_exit_code_and_no_output(layout):
    layout.release("2025.2", {"demo": "1.0.0"})
    override = layout.root / "overrides" / "2025.2" / "constraints.txt"
    override.parent.mkdir(parents=True)
    override.write_text("cryptography===44.0.1\ncryptography>=45\n")
    result = invoke(layout, "constraints", "--release", "2025.2")
    assert result.returncode == OverrideError.exit_code
    assert "overrides/2025.2/constraints.txt:2:" in result.stderr
    assert not (layout.root / "build" / "2025.2" / "upper-constraints.txt").exists()
