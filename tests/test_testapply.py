"""testapply against real upstream suites: oslo.config from PyPI, and a demo project whose tests need an sdist-only package.

(keystone's whole suite runs in test_upstream_suites.py.)
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Layout, invoke, make_patch, run_git

from pipeline.testing.impact import ImportGraph, selector_regex
from pipeline.testing.testapply import BANNER
from pipeline.testing.testenv import extras_requirements, tox_test_env

GENUINE = sorted((REPO_ROOT / "tests" / "data" / "oslo.config").glob("*.patch"))


def test_tox_test_env(tmp_path):
    (tmp_path / "test-requirements.txt").write_text("stestr\n")
    (tmp_path / "tox.ini").write_text(
        "[testenv]\nsetenv =\n  OS_TEST_TIMEOUT={env:OS_TEST_TIMEOUT:60}\n  PYTHONWARNINGS=default\n"
        "deps =\n  -c{env:TOX_CONSTRAINTS_FILE:https://x}\n  -r{toxinidir}/test-requirements.txt\n"
        "  -r{toxinidir}/missing.txt\n  hacking>=6  # style\n  .[ldap,memcache]\n")
    (tmp_path / "setup.cfg").write_text("[extras]\nldap =\n  python-ldap>=3.0.0 # PSF\n  ldappool>=2.3.1 # MPL\n"
                                        "memcache =\n  python-memcached>=1.56 # PSF\n")
    tox = tox_test_env(tmp_path)
    assert tox.files == ("test-requirements.txt",) and tox.literal == ("hacking>=6",)
    assert tox.extras == ("ldap", "memcache")
    assert dict(tox.env) == {"OS_TEST_TIMEOUT": "60", "PYTHONWARNINGS": "default"}
    assert extras_requirements(tmp_path, tox.extras) == ["python-ldap>=3.0.0", "ldappool>=2.3.1", "python-memcached>=1.56"]


def test_import_graph_selects_what_reaches_the_change(tmp_path):
    pkg = tmp_path / "tree" / "app"
    files = {
        "__init__.py": "", "core.py": "def f():\n    return 1\n", "api.py": "from app import core\n",
        "db/__init__.py": "", "db/models.py": "X = 1\n", "data/policy.json": "{}",
        "tests/__init__.py": "", "tests/test_api.py": "from app import api\n", "tests/test_core.py": "import app.core\n",
        "tests/test_models.py": "from app.db import models\n", "tests/test_other.py": "import os\n",
        # A driver no test imports, loaded through its entry point by a module a test imports.
        "drivers/__init__.py": "", "drivers/fast.py": "class Driver:\n    pass\n",
        "loader.py": "def load(name):\n    return stevedore.DriverManager(f'app.drivers', name)\n",
        "tests/test_loader.py": "from app import loader\n",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    (pkg.parent / "setup.cfg").write_text("[entry_points]\napp.drivers =\n    fast = app.drivers.fast:Driver\n")
    graph = ImportGraph.of(pkg.parent)
    assert graph.impacted(["app/core.py"]) == ["app.tests.test_api", "app.tests.test_core"]  # test_api through api
    assert graph.impacted(["app/drivers/fast.py"]) == ["app.tests.test_loader"]  # through its entry point
    assert graph.impacted(["app/db/__init__.py"]) == ["app.tests.test_models"]
    assert graph.impacted(["app/tests/test_other.py"]) == ["app.tests.test_other"]
    assert len(graph.impacted(["app/data/policy.json"])) == 5  # data files: the package's whole suite
    assert graph.impacted(["README.rst", "releasenotes/notes/x.yaml"]) == []
    assert selector_regex(["a.tests.test_x"]) == r"^(a\.tests\.test_x)\."


# --- the real thing -------------------------------------------------------------------------

pytestmark_network = pytest.mark.network


@pytest.fixture
def oslo(tmp_path, upstream):
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"oslo.config": "10.0.0"}, services=[])
    layout.settings_overrides.update(source_mode="auto", index_url="https://pypi.org/simple",
                                     cache_dir=str(REPO_ROOT / ".cache" / "tests"))
    for patch in GENUINE:
        layout.add_patch("oslo.config", "2025.2", patch.name, patch.read_bytes())
    return layout


def rows(stdout: str, prefix: str) -> list[list[str]]:
    table = []
    for line in stdout.splitlines():
        if line.startswith(prefix):
            table.append([cell.strip() for cell in line.split("  ") if cell.strip()])
    return table


def tree(layout, component="oslo.config") -> Path:
    return layout.root / "build" / "testapply" / "2025.2" / component / "tree"


def junit(layout):
    return ET.parse(layout.root / "build" / "testapply" / "junit.xml").getroot()


@pytest.mark.network
def test_per_patch_selection_from_the_import_graph_then_the_full_suite(oslo):
    result = invoke(oslo, "testapply")
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout, "oslo.config/")
    assert [r[1] for r in table] == [GENUINE[0].name, GENUINE[1].name, "(end of series)"]
    assert table[0][3].startswith("impacted:") and table[2][3] == "full suite"
    full = int(table[2][4].split()[0])
    assert full > 900 and int(table[0][4].split()[0]) < full
    assert result.stdout.rstrip().endswith(BANNER)
    log = run_git(tree(oslo), "log", "--format=%an|%s", "-3").splitlines()
    assert log[0] == "openstack-patches maintainers|Fix wrong comment in find_config_dirs"
    suites = {s.get("name"): s for s in junit(oslo)}
    final = suites["oslo.config/2025.2/(end of series)"]
    assert int(final.get("tests")) == full + int(table[2][4].split(", ")[2].split()[0])  # passed + skipped
    assert not list(junit(oslo).iter("failure"))


@pytest.mark.network
def test_deferred_skipped_and_selector(oslo):
    deferred = invoke(oslo, "testapply", "--defer-tests")
    assert deferred.returncode == 0, deferred.stderr
    assert [r[3] for r in rows(deferred.stdout, "oslo.config/")] == ["none", "full suite"]
    skipped = invoke(oslo, "testapply", "--skip-tests")
    assert skipped.returncode == 0 and [r[3] for r in rows(skipped.stdout, "oslo.config/")] == ["none", "none"]
    selected = invoke(oslo, "testapply", "--tests", "oslo_config.tests.test_types")
    table = rows(selected.stdout, "oslo.config/")
    assert all(r[3] == "selector oslo_config.tests.test_types" for r in table) and len(table) == 2


@pytest.mark.network
def test_conflicting_second_patch(oslo):
    conflicting = oslo.root / "patches" / "oslo.config" / "2025.2" / GENUINE[1].name
    conflicting.write_text(conflicting.read_text().replace(
        "-    If no project name is supplied, we only look for ${prog.conf.d/}.",
        "-    If no project name is supplied, we only look for ${prog.conf.d/} (stale)."))
    result = invoke(oslo, "testapply", "--skip-tests")
    assert result.returncode == 20, result.stderr
    table = rows(result.stdout, "oslo.config/")
    assert table[0][2] == "applied" and table[1][2].startswith("FAILED: oslo_config/cfg.py: hunk #1")
    assert "All patches applied correctly" not in result.stdout and tree(oslo).exists()
    conflicting.write_bytes(GENUINE[1].read_bytes())
    assert invoke(oslo, "testapply", "--skip-tests").returncode == 0


@pytest.mark.network
def test_patch_that_breaks_a_unit_test(oslo):
    invoke(oslo, "fetch", "--release", "2025.2")
    src = oslo.root / "build" / "src" / "2025.2" / "oslo.config"

    def break_integer(repo: Path) -> None:
        types = repo / "oslo_config" / "types.py"
        types.write_text(types.read_text().replace('num = "0|-?[1-9][0-9]*"', 'num = "0|[1-9][0-9]*"'))

    oslo.add_patch("oslo.config", "2025.2", "0003-Refuse-negative-range-bounds.patch",
                   make_patch(src, break_integer, "Refuse negative range bounds"))
    result = invoke(oslo, "testapply")
    assert result.returncode == 30, result.stdout + result.stderr
    assert "after 0003-Refuse-negative-range-bounds.patch (impacted:" in result.stderr
    assert "oslo_config.tests.test_types.RangeTypeTests.test_range" in result.stderr
    failed = [c.get("classname") + "." + c.get("name") for c in junit(oslo).iter("testcase") if c.find("failure") is not None]
    assert any("RangeTypeTests" in f for f in failed)
    assert all(c.find("failure").text for c in junit(oslo).iter("testcase") if c.find("failure") is not None)


@pytest.mark.network
def test_keep_going_reports_every_series(oslo):
    oslo.release("2026.1", {"oslo.config": "10.3.0"}, services=[])
    for patch in GENUINE:  # 10.3.0 already contains both fixes
        oslo.add_patch("oslo.config", "2026.1", patch.name, patch.read_bytes())
    result = invoke(oslo, "testapply", "--skip-tests", "--keep-going", "--jobs", "2")
    assert result.returncode == 20
    assert {r[0] for r in rows(result.stdout, "oslo.config/")} == {"oslo.config/2025.2", "oslo.config/2026.1"}
    assert "oslo.config/2026.1: patches/oslo.config/2026.1/0001-" in result.stderr and "does not apply" in result.stderr


def test_unknown_component_and_release(oslo):
    assert invoke(oslo, "testapply", "--component", "nova").returncode == 4
    assert invoke(oslo, "testapply", "--release", "2099.1").returncode == 3


# --- a demo suite: an sdist-only test dependency, skips, an environment that cannot be installed ---


@pytest.fixture
def demo(tmp_path, upstream):
    """The demo upstream with a stestr suite whose requirements include testresources (an sdist built with pbr)."""
    upstream.write(".stestr.conf", "[DEFAULT]\ntest_path=./demo/tests\ntop_dir=./\n")
    upstream.write("test-requirements.txt", "stestr\ntestresources\n")
    upstream.write("demo/tests/test_skip.py", textwrap.dedent('''\
        import unittest
        import testresources


        class TestSkip(unittest.TestCase):
            def test_skipped(self):
                self.skipTest("no database here")

            def test_resources(self):
                self.assertTrue(testresources.OptimisingTestSuite)
        '''))
    upstream.write("tox.ini", "[testenv]\ndeps =\n  -r{toxinidir}/test-requirements.txt\n")
    upstream.commit("Add a stestr suite")
    upstream.tag("2.2.0")
    layout = Layout(tmp_path / "project", upstream.path.parent)
    layout.release("2025.2", {"demo": "2.2.0"}, services=[])
    layout.settings_overrides["cache_dir"] = str(tmp_path / "cache")
    layout.add_patch("demo", "2025.2", "0001-swap.patch", make_patch(
        upstream.path, lambda r: (r / "demo/core.py").write_text((r / "demo/core.py").read_text().replace("a + b", "b + a")),
        "Swap operands"))
    return layout


@pytest.mark.network
def test_pbr_version_reaches_only_the_package_and_skips_are_reported(demo):
    """testresources is built from its sdist with pbr: the component's PBR_VERSION (2.2.0) must not reach it."""
    result = invoke(demo, "testapply", "--defer-tests")
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = rows(result.stdout, "demo/")
    assert row[4] == "3 passed, 0 failed, 1 skipped"
    suite = next(iter(junit(demo)))
    assert (suite.get("tests"), suite.get("skipped"), suite.get("failures"), suite.get("errors")) == ("5", "1", "0", "0")
    skipped = next(c for c in suite.iter("testcase") if c.find("skipped") is not None)
    assert skipped.get("name") == "test_skipped" and "no database here" in skipped.find("skipped").get("message")


@pytest.mark.network
def test_an_environment_that_cannot_be_installed_is_an_error_everywhere(demo):
    overrides = demo.root / "overrides" / "2025.2" / "constraints.txt"
    overrides.parent.mkdir(parents=True)
    overrides.write_text("stestr===999.0.0\n")  # no such release: the venv cannot be made
    result = invoke(demo, "testapply", "--defer-tests")
    assert result.returncode == 31 and "the test environment could not be installed" in result.stderr
    (row,) = rows(result.stdout, "demo/")
    assert row[3] == "full suite (did not run)" and row[4].startswith("ERROR:")
    suite = next(iter(junit(demo)))
    assert suite.get("errors") == "1" and suite.find("testcase/error") is not None
    assert "All patches applied correctly" not in result.stdout
