"""testapply on a real OpenStack library: oslo.config 10.0.0 from PyPI with genuine upstream fixes.

Runs the real `invoke testapply` (nox, uv, stestr and oslo.config's own unit tests).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.errors import PatchApplyError, TestsFailedError
from pipeline.testapply import BANNER, impacted_tests, parse_stestr, selector_regex, tox_test_env

from conftest import Layout, invoke, make_patch, run_git

DATA = Path(__file__).resolve().parent / "data" / "oslo.config"
GENUINE = sorted(DATA.glob("*.patch"))


# --- pure logic ------------------------------------------------------------------------

MODULES = ["oslo_config.tests.test_cfg", "oslo_config.tests.test_sources", "oslo_config.tests.test_types",
           "other.tests.test_cfg"]


@pytest.mark.parametrize("changed,expected", [
    (["oslo_config/sources/_uri.py"], ["oslo_config.tests.test_sources"]),
    (["oslo_config/cfg.py"], ["oslo_config.tests.test_cfg"]),
    (["oslo_config/tests/test_types.py"], ["oslo_config.tests.test_types"]),
    (["releasenotes/notes/x.yaml", "README.rst"], []),
])
def test_impacted_tests(changed, expected):
    assert impacted_tests(changed, MODULES) == expected


def test_selector_regex():
    assert selector_regex(["a.tests.test_x", "a.tests.test_y"]) == r"^(a\.tests\.test_x|a\.tests\.test_y)\."


def test_parse_stestr_output():
    output = (
        "{0} oslo_config.tests.test_types.IntegerTypeTests.test_positive [0.001s] ... ok\n"
        "{1} oslo_config.tests.test_types.IntegerTypeTests.test_negative [0.002s] ... FAILED\n"
        "{1} oslo_config.tests.test_cfg.X.test_skip [0.000000s] ... SKIPPED: needs network\n"
    )
    counts = parse_stestr(output)
    assert (counts.passed, counts.failed, counts.skipped) == (1, 1, 1)
    garbled = output.replace("{0} oslo_config", "warning: x{0} oslo_config") + "Totals\n - Passed: 1\n - Skipped: 1\n - Failed: 1\n"
    assert (parse_stestr(garbled).passed, parse_stestr(garbled).failed) == (1, 1)
    assert counts.failures == ["oslo_config.tests.test_types.IntegerTypeTests.test_negative"]


def test_tox_test_env(tmp_path):
    (tmp_path / "test-requirements.txt").write_text("stestr\n")
    (tmp_path / "doc").mkdir()
    (tmp_path / "doc" / "requirements.txt").write_text("sphinx\n")
    (tmp_path / "tox.ini").write_text(
        "[testenv]\nsetenv =\n  OS_TEST_TIMEOUT={env:OS_TEST_TIMEOUT:60}\n  PYTHONWARNINGS=default\n"
        "deps =\n  -c{env:TOX_CONSTRAINTS_FILE:https://x}\n  -r{toxinidir}/test-requirements.txt\n"
        "  -r{toxinidir}/doc/requirements.txt\n  -r{toxinidir}/missing.txt\n  hacking>=6  # style\n")
    assert tox_test_env(tmp_path) == (["test-requirements.txt", "doc/requirements.txt"], ["hacking>=6"],
                                      {"OS_TEST_TIMEOUT": "60", "PYTHONWARNINGS": "default"})


# --- the real thing -------------------------------------------------------------------------


@pytest.fixture
def oslo(tmp_path, upstream):
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"oslo.config": "10.0.0"}, services=[])
    layout.settings_overrides.update(source_mode="auto", index_url="https://pypi.org/simple",
                                     cache_dir=str(Path(__file__).resolve().parent.parent / ".cache" / "tests"))
    for patch in GENUINE:
        layout.add_patch("oslo.config", "2025.2", patch.name, patch.read_text())
    return layout


def rows(stdout: str) -> list[list[str]]:
    lines = stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("series "))
    table = []
    for line in lines[start + 2:]:
        if not line.startswith("oslo.config/"):
            break
        table.append([cell for cell in line.split("  ") if cell.strip()])
    return table


def tree(layout) -> Path:
    return layout.root / "build" / "testapply" / "2025.2" / "oslo.config" / "tree"


pytestmark = pytest.mark.network


def test_per_patch_runs_impacted_tests_then_the_full_suite(oslo):
    result = invoke(oslo, "testapply")
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert [r[1].strip() for r in table] == [GENUINE[0].name, GENUINE[1].name, "(end of series)"]
    assert table[0][3].strip() == "impacted: test_sources" and table[1][3].strip() == "impacted: test_cfg"
    assert table[2][3].strip() == "full suite"
    assert all(" 0 failed" in r[4] for r in table)
    full = int(table[2][4].split()[0])
    assert full > 900 and int(table[0][4].split()[0]) < full
    assert result.stdout.rstrip().endswith(BANNER)
    # Authorship kept: one commit per patch on top of the sdist import.
    log = run_git(tree(oslo), "log", "--format=%an|%s", "-3").splitlines()
    assert log[0] == "openstack-patches maintainers|Fix wrong comment in find_config_dirs"
    junit = ET.parse(oslo.root / "build" / "testapply" / "junit.xml").getroot()
    assert sum(1 for _ in junit.iter("testcase")) > full
    assert not list(junit.iter("failure"))


def test_deferred_and_skipped(oslo):
    deferred = invoke(oslo, "testapply", "--defer-tests")
    assert deferred.returncode == 0, deferred.stderr
    table = rows(deferred.stdout)
    assert [r[3].strip() for r in table] == ["none", "full suite"]
    assert table[0][4].strip() == "-" and " 0 failed" in table[1][4]
    skipped = invoke(oslo, "testapply", "--skip-tests")
    assert skipped.returncode == 0
    assert [r[3].strip() for r in rows(skipped.stdout)] == ["none", "none"]
    assert skipped.stdout.rstrip().endswith(BANNER)


def test_selector(oslo):
    result = invoke(oslo, "testapply", "--skip-tests")  # warm the caches
    result = invoke(oslo, "testapply", "--tests", "oslo_config.tests.test_types")
    table = rows(result.stdout)
    assert all(r[3].strip() == "selector oslo_config.tests.test_types" for r in table)
    ran = [sum(int(n) for n in r[4].replace(",", "").split()[::2]) for r in table]  # passed + failed + skipped
    assert len(set(ran)) == 1 and 50 < ran[0] < 900


def test_conflicting_second_patch(oslo, tmp_path):
    conflicting = oslo.root / "patches" / "oslo.config" / "2025.2" / GENUINE[1].name
    # Replace patch 2 with one made against 10.0.0 that rewrites the line patch 1 changed.
    conflicting.write_text(conflicting.read_text().replace(
        "-    If no project name is supplied, we only look for ${prog.conf.d/}.",
        "-    If no project name is supplied, we only look for ${prog.conf.d/} (stale)."))
    result = invoke(oslo, "testapply")
    assert result.returncode == PatchApplyError.exit_code, result.stderr
    table = rows(result.stdout)
    assert table[0][2].strip() == "applied"
    assert table[1][1].strip() == GENUINE[1].name and table[1][2].strip().startswith("FAILED: oslo_config/cfg.py: hunk #1")
    assert "All patches applied correctly" not in result.stdout
    assert f"{GENUINE[1].name} does not apply to oslo.config (release 2025.2, ref 10.0.0" in result.stderr
    assert f"the tree is kept at {tree(oslo)}" in result.stderr
    assert tree(oslo).exists()  # kept for inspection
    # The next run starts clean: fix the series and everything passes.
    conflicting.write_text(GENUINE[1].read_text())
    again = invoke(oslo, "testapply", "--skip-tests")
    assert again.returncode == 0 and again.stdout.rstrip().endswith(BANNER)


def test_patch_that_breaks_a_unit_test(oslo, upstream):
    src = tree(oslo).parent.parent.parent.parent / "src" / "2025.2" / "oslo.config"
    invoke(oslo, "fetch", "--release", "2025.2")

    def break_integer(repo: Path) -> None:
        types = repo / "oslo_config" / "types.py"
        types.write_text(types.read_text().replace('num = "0|-?[1-9][0-9]*"', 'num = "0|[1-9][0-9]*"'))

    oslo.add_patch("oslo.config", "2025.2", "0003-Refuse-negative-range-bounds.patch",
                   make_patch(src, break_integer, "Refuse negative range bounds"))
    result = invoke(oslo, "testapply", "--component", "oslo.config")
    assert result.returncode == TestsFailedError.exit_code, result.stdout + result.stderr
    assert "after 0003-Refuse-negative-range-bounds.patch (impacted: test_types)" in result.stderr
    assert ("2 test(s) failed: oslo_config.tests.test_types.RangeTypeTests.test_range, "
            "oslo_config.tests.test_types.RangeTypeTests.test_range_exclusive") in result.stderr
    junit = ET.parse(oslo.root / "build" / "testapply" / "junit.xml").getroot()
    failed = [c.get("classname") + "." + c.get("name") for c in junit.iter("testcase") if c.find("failure") is not None]
    assert any("RangeTypeTests" in f for f in failed)


def test_keep_going_reports_every_series(oslo):
    oslo.release("2026.1", {"oslo.config": "10.3.0"}, services=[])
    for patch in GENUINE:  # 10.3.0 already contains both fixes
        oslo.add_patch("oslo.config", "2026.1", patch.name, patch.read_text())
    result = invoke(oslo, "testapply", "--skip-tests", "--keep-going", "--jobs", "2")
    assert result.returncode == PatchApplyError.exit_code
    series = {r[0].strip() for r in rows(result.stdout)}
    assert series == {"oslo.config/2025.2", "oslo.config/2026.1"}
    assert "oslo.config/2026.1: patches/oslo.config/2026.1/0001-Fix-type-mismatch-between-option-and-its-default.patch does not apply" in result.stderr


def test_unknown_component_and_release(oslo):
    result = invoke(oslo, "testapply", "--component", "nova")
    assert result.returncode == 4 and "unknown component 'nova'" in result.stderr
    result = invoke(oslo, "testapply", "--release", "2099.1")
    assert result.returncode == 3 and "unknown release '2099.1'" in result.stderr
