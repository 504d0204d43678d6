"""invoke cve: patches and overrides that resolve a CVE, images built with them, releases without them."""

from __future__ import annotations

import json

import pytest
from conftest import invoke, make_patch, run_git

from pipeline import build as build_stage

CVE = "CVE-2026-12345"


@pytest.fixture
def cve_layout(layout, upstream):
    for release, ref in (("2025.1", "1.0.1"), ("2025.2", "2.0.1"), ("2026.1", "2.0.1")):
        layout.release(release, {"demo": ref})
    run_git(upstream.path, "checkout", "-q", "2.0.1")
    fix = make_patch(upstream.path, lambda r: (r / "demo" / "core.py").write_text("def greet(name):\n    return name\n"),
                     f"Escape names in greet ({CVE})\n\nCloses-Bug: #2000002")
    run_git(upstream.path, "checkout", "-q", "master")
    layout.add_patch("demo", "2025.2", "0001-Escape-names.patch", fix)
    layout.add_patch("demo", "2026.1", "0001-Unrelated.patch", make_patch(
        upstream.path, lambda r: (r / "README").write_text("x\n"), "Unrelated change"))
    (layout.root / "overrides" / "2025.1").mkdir(parents=True)
    (layout.root / "overrides" / "2025.1" / "constraints.txt").write_text(
        f"# {CVE}: the same flaw in a dependency\nsix===1.17.0\n")
    return layout


def test_patches_overrides_and_missing_releases(cve_layout):
    result = invoke(cve_layout, "cve", CVE.lower(), "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cve"] == CVE
    assert report["patches"] == [{"release": "2025.2", "component": "demo",
                                  "patch": "patches/demo/2025.2/0001-Escape-names.patch",
                                  "subject": f"Escape names in greet ({CVE})"}]
    assert report["overrides"] == [{"release": "2025.1", "package": "six", "override": "six===1.17.0",
                                    "file": "overrides/2025.1/constraints.txt:2"}]
    assert report["missing"] == [{"release": "2025.1", "component": "demo", "ref": "1.0.1"},
                                 {"release": "2026.1", "component": "demo", "ref": "2.0.1"}]
    assert report["images"] == []
    table = invoke(cve_layout, "cve", CVE)
    assert table.returncode == 0 and "patches/demo/2025.2/0001-Escape-names.patch" in table.stdout
    assert "2026.1   demo       2.0.1" in table.stdout


def test_unknown_cve_still_runs_and_a_malformed_one_is_refused(cve_layout):
    none = invoke(cve_layout, "cve", "CVE-1999-0001")
    assert none.returncode == 0 and "no configured release carries a patch or override for CVE-1999-0001" in none.stdout
    bad = invoke(cve_layout, "cve", "CVE-12")
    assert bad.returncode == 7 and "is not a CVE identifier" in bad.stderr


@pytest.mark.docker
@pytest.mark.network
def test_built_images_with_the_fix(cve_layout):
    report = build_stage.build(cve_layout.project(), "2025.2", ["demo"])
    assert report.first_error() is None
    record = report.image("demo").record
    (image,) = json.loads(invoke(cve_layout, "cve", CVE, "--format", "json").stdout)["images"]
    assert image == {"release": "2025.2", "service": "demo", "image": record.tags[0], "image_id": record.image_id,
                     "component": "demo", "fix": "patches/demo/2025.2/0001-Escape-names.patch"}
