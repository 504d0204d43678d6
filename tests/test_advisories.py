"""Advisories: the real OSSA and PyPA snapshots parsed, their sources fetched like the sources, images assessed, VEX.

Every advisory here is a real one from ``../shared/advisories`` (openstack/ossa
to OSSA-2026-012, pypa/advisory-database for the shipped constraints'
packages); only the malformed files are made here, from real ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from pipeline import advisories

from conftest import run_git

SNAPSHOTS = Path("/work/shared/advisories")
OSSA, PYPA = SNAPSHOTS / "ossa", SNAPSHOTS / "pypa" / "vulns"
pytestmark = pytest.mark.skipif(not OSSA.is_dir(), reason="the advisory snapshots are not on this machine")


@pytest.fixture
def database(layout):
    advisories._cache.clear()
    return advisories.load(layout.project(ossa=str(OSSA), pypa_advisories=str(PYPA)))


def advisory(db, package: str, advisory_id: str):
    return next(a for a in db.for_package(package) if a.id == advisory_id)


def contains(db, package: str, advisory_id: str, version: str) -> bool:
    return advisory(db, package, advisory_id).affected[0].containing(version) is not None


def test_ossa_ranges_as_upstream_writes_them(database):
    # The issue's two: keystone 28.0.0 (2025.2's pin) is in OSSA-2026-005 and in OSSA-2026-007 (fixed in 28.0.1).
    assert contains(database, "keystone", "OSSA-2026-005", "28.0.0")
    assert not contains(database, "keystone", "OSSA-2026-005", "28.0.1")
    assert contains(database, "keystone", "OSSA-2026-007", "28.0.0") and not contains(database, "keystone", "OSSA-2026-007", "28.0.1")
    assert contains(database, "keystone", "OSSA-2026-005", "20.0.0")  # >=14.0.0 <26.1.1
    a = advisory(database, "keystone", "OSSA-2026-005")
    assert a.cves == ("CVE-2026-33551",) and a.bugs == ("2142138",)
    assert a.reviews_for("keystone", "2025.2") == ("https://review.opendev.org/983588",)
    assert advisory(database, "keystone", "OSSA-2026-007").cves == ()  # "CVE-2026-pending" is no identifier
    # Per-project reviews: OSSA-2025-002 names keystone's and swift's for each series.
    assert advisory(database, "keystone", "OSSA-2025-002").review_numbers("keystone", "2025.2") == ["966070"]
    # Spellings of real files: no space between specifiers (OSSA-2019-003), '=' for '==' (OSSA-2021-001),
    # 'and' between alternatives (OSSA-2016-013), a lone bound split by a comma (OSSA-2024-004: '>=25.0.0, <26.1.0').
    assert contains(database, "nova", "OSSA-2019-003", "18.2.1") and not contains(database, "nova", "OSSA-2019-003", "18.2.2")
    assert contains(database, "neutron", "OSSA-2021-001", "18.0.0")
    assert contains(database, "heat", "OSSA-2016-013", "7.0.0")
    assert contains(database, "ironic", "OSSA-2024-004", "26.0.0") and not contains(database, "ironic", "OSSA-2024-004", "27.0.0")
    # One entry for three products (OSSA-2023-002: 'Cinder <19.1.2, ...; Glance ...; Nova ...').
    assert contains(database, "glance", "OSSA-2023-002", "25.0.0") and not contains(database, "glance", "OSSA-2023-002", "25.0.1")


def test_date_based_versions_come_before_semantic_ones(database):
    """OSSA-2016-005 affects keystone '<= 2015.1.2, >= 8.0.0 <= 8.0.1': a plain comparison puts 28.0.0 in it."""
    assert SpecifierSet("<=2015.1.2").contains("28.0.0")
    assert contains(database, "keystone", "OSSA-2016-005", "2015.1.2") and contains(database, "keystone", "OSSA-2016-005", "8.0.1")
    assert not contains(database, "keystone", "OSSA-2016-005", "28.0.0")
    # Prose before August 2015: the versions named, or for an open end the date-based releases of its time.
    old = advisory(database, "keystone", "OSSA-2014-018")  # 'up to 2013.2.3, and 2014.1 to 2014.1.1'
    assert old.affected[0].reading == "read as <=2014.1.1"
    assert old.affected[0].containing("2014.1.1") and not old.affected[0].containing("28.0.0")
    everything = advisory(database, "nova", "OSSA-2011-001")  # 'All versions', 2011
    assert everything.affected[0].containing("2011.3") and not everything.affected[0].containing("2012.1")
    assert not everything.affected[0].containing("32.2.0")
    # A prose range of a project that never had date-based versions cannot be bounded: named and skipped.
    assert any("OSSA-2013-013.yaml: python-keystoneclient: version range 'All versions'" in s for s in database.skipped)


def test_pypa_events_in_any_order_and_an_ossa_cve_once(database, layout):
    # PYSEC-2018-104 lists its events unsorted: introduced 3.9.0, fixed 3.19.1, introduced 0, fixed 3.8.1, ...
    middleware = database.for_package("oslo.middleware")  # any spelling of the name
    ossa = next(a for a in middleware if a.id == "OSSA-2017-001")
    assert "PYSEC-2018-104" in ossa.aliases and not any(a.id == "PYSEC-2018-104" for a in middleware)
    advisories._cache.clear()
    pysec = advisories.load(layout.project(ossa="", pypa_advisories=str(PYPA)))  # the same file on its own
    affected = next(a for a in pysec.for_package("oslo-middleware") if a.id == "PYSEC-2018-104").affected[0]
    assert [v for v in ("3.8.0", "3.8.1", "3.19.0", "3.19.1", "3.21.0", "3.23.1") if affected.containing(v)] == \
        ["3.8.0", "3.19.0", "3.21.0"]
    # zstd's advisory names no fixed version ('introduced: 0' only): every version is in it.
    zstd = next(a for a in database.for_package("zstd") if a.id == "PYSEC-2023-121").affected[0]
    assert zstd.containing("1.5.7.2").fixed == "no fixed version named"


def ossa_repository(tmp_path: Path) -> Path:
    repo = tmp_path / "ossa-repo"
    shutil.copytree(OSSA, repo / "ossa")
    (repo / "README.rst").write_text("OpenStack Security Advisories\n")
    run_git(repo, "init", "-q")
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "Advisories up to OSSA-2026-012")
    return repo


def test_a_git_source_is_fetched_once_exported_and_kept_when_unreachable(layout, tmp_path, capfd):
    repo = ossa_repository(tmp_path)
    project = layout.project(ossa=repo.as_uri(), pypa_advisories="")
    advisories._cache.clear()
    db = advisories.load(project, refresh=True)
    assert any(a.id == "OSSA-2026-005" for a in db.for_package("keystone"))
    first = run_git(repo, "rev-parse", "HEAD")
    assert db.sources["ossa"] == f"{repo.as_uri()} at {first[:12]}"
    exports = project.layout.cache_dir / "advisories"
    assert [p.name for p in exports.glob("ossa-*/*")] == [first]
    # A new advisory upstream: the next refresh takes it, and only that commit's export stays.
    (repo / "ossa" / "OSSA-2026-012.yaml").unlink()
    run_git(repo, "commit", "-q", "-am", "Withdraw one")
    advisories._cache.clear()
    assert not any(a.id == "OSSA-2026-012" for a in advisories.load(project, refresh=True).for_package("ironic"))
    assert [p.name for p in exports.glob("ossa-*/*")] == [run_git(repo, "rev-parse", "HEAD")]
    # Unreachable: the mirror as it is, said once; offline: the mirror without asking.
    repo.rename(tmp_path / "gone")
    capfd.readouterr()
    advisories._cache.clear()
    assert advisories.load(project, refresh=True).sources["ossa"].endswith(run_git(tmp_path / "gone", "rev-parse", "HEAD")[:12])
    assert "unreachable" in capfd.readouterr().err
    advisories._cache.clear()
    advisories.load(layout.project(ossa=repo.as_uri(), pypa_advisories="", offline=True))
