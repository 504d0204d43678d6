"""Advisories: the real OSSA and PyPA snapshots parsed, their sources fetched like the sources, images assessed, VEX.

Every advisory here is a real one from ``../shared/advisories`` (openstack/ossa
to OSSA-2026-012, pypa/advisory-database for the shipped constraints'
packages); only the malformed files are made here, from real ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import OSSA, PYPA, REPO_ROOT, invoke, run_git
from packaging.specifiers import SpecifierSet

from pipeline.core.errors import ConfigError
from pipeline.provenance import advisory_database
from pipeline.provenance.assessment import patch_fixes

pytestmark = pytest.mark.skipif(not OSSA.is_dir(), reason="the advisory snapshots are not on this machine")


@pytest.fixture
def database(layout):
    advisory_database.forget()
    return advisory_database.load(layout.project(ossa=str(OSSA), pypa_advisories=str(PYPA)))


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
    advisory_database.forget()
    pysec = advisory_database.load(layout.project(ossa="", pypa_advisories=str(PYPA)))  # the same file on its own
    affected = next(a for a in pysec.for_package("oslo-middleware") if a.id == "PYSEC-2018-104").affected[0]
    assert [v for v in ("3.8.0", "3.8.1", "3.19.0", "3.19.1", "3.21.0", "3.23.1") if affected.containing(v)] == \
        ["3.8.0", "3.19.0", "3.21.0"]
    # zstd's advisory names no fixed version ('introduced: 0' only): every version is in it.
    zstd = next(a for a in database.for_package("zstd") if a.id == "PYSEC-2023-121").affected[0]
    assert zstd.containing("1.5.7.2").fixed == "no fixed version named"


def test_patch_messages_that_fix_an_advisory(database):
    ldap = advisory(database, "keystone", "OSSA-2026-007")
    shipped = (REPO_ROOT / "patches" / "keystone" / "2025.2").glob("0002-*.patch")
    from pipeline.patches.patchfile import parse_patch

    message = parse_patch(next(shipped).read_bytes()).message
    assert patch_fixes(ldap, "keystone", message) == "names OSSA-2026-007"
    ec2 = advisory(database, "keystone", "OSSA-2026-005")
    assert patch_fixes(ec2, "keystone", "Enforce the boundary\n\nCloses-Bug: #2142138\n") == "Closes-Bug #2142138, the advisory's bug"
    assert patch_fixes(ec2, "keystone", "Fix it\n\nRelated-Bug: #2142138\n") is None
    assert patch_fixes(ec2, "keystone", "Fix it\n\nGerrit-Change: 983588/4\n") == "Gerrit change 983588, a review of the advisory"
    s3 = advisory(database, "keystone", "OSSA-2025-002")  # its reviews for swift are not keystone's fix
    assert patch_fixes(s3, "keystone", "Fix it\n\nGerrit-Change: 966063/1\n") is None
    assert patch_fixes(s3, "keystone", "Fix it\n\nGerrit-Change: 966070/1\n") is not None
    assert patch_fixes(ec2, "keystone", "Fix CVE-2026-33551\n") == "names CVE-2026-33551"


def test_a_malformed_advisory_is_named_and_skipped(layout, tmp_path):
    folder = tmp_path / "ossa"
    shutil.copytree(OSSA, folder)
    broken = folder / "OSSA-2026-005.yaml"
    broken.write_text(broken.read_text().replace("affected-products:\n", "affected-products:\n  - [", 1))
    bad_range = folder / "OSSA-2026-007.yaml"
    bad_range.write_text(bad_range.read_text().replace("'>=8.0.0 <25.0.1", "'>=8.0.0 <<25.0.1"))
    layout.release("2025.2", {"demo": "2.0.1"})
    layout.settings_overrides.update(ossa=str(folder), pypa_advisories="")
    result = invoke(layout, "advisories", "--release", "2025.2", "--strict")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"warning: {folder}: OSSA-2026-005.yaml: line 20: " in result.stderr
    assert f"{folder}: OSSA-2026-007.yaml: keystone: version range" in result.stderr
    assert "2025.2 demo: not built (invoke build --release 2025.2 --service demo): not assessed" in result.stderr
    assert result.stdout.strip() == "no built image to assess"
    data = json.loads(invoke(layout, "advisories", "--format", "json").stdout)
    assert len([s for s in data["skipped"] if "OSSA-2026-00" in s]) == 2 and data["findings"] == []


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
    advisory_database.forget()
    db = advisory_database.load(project, refresh=True)
    assert any(a.id == "OSSA-2026-005" for a in db.for_package("keystone"))
    first = run_git(repo, "rev-parse", "HEAD")
    assert db.sources["ossa"] == f"{repo.as_uri()} at {first[:12]}"
    exports = project.layout.cache_dir / "advisories"
    assert [p.name for p in exports.glob("ossa-*/*")] == [first]
    # A new advisory upstream: the next refresh takes it, and only that commit's export stays.
    (repo / "ossa" / "OSSA-2026-012.yaml").unlink()
    run_git(repo, "commit", "-q", "-am", "Withdraw one")
    advisory_database.forget()
    assert not any(a.id == "OSSA-2026-012" for a in advisory_database.load(project, refresh=True).for_package("ironic"))
    assert [p.name for p in exports.glob("ossa-*/*")] == [run_git(repo, "rev-parse", "HEAD")]
    # Unreachable: the mirror as it is, said once; offline: the mirror without asking.
    repo.rename(tmp_path / "gone")
    capfd.readouterr()
    advisory_database.forget()
    assert advisory_database.load(project, refresh=True).sources["ossa"].endswith(run_git(tmp_path / "gone", "rev-parse", "HEAD")[:12])
    assert "unreachable" in capfd.readouterr().err
    advisory_database.forget()
    advisory_database.load(layout.project(ossa=repo.as_uri(), pypa_advisories="", offline=True))


def test_an_unreachable_source_never_fetched_is_exit_10_without_its_credentials(layout):
    layout.release("2025.2", {"demo": "2.0.1"})
    layout.settings_overrides.update(ossa="https://advisories:s3cret-token@127.0.0.1:9/openstack/ossa",
                                     pypa_advisories="")
    result = invoke(layout, "advisories")
    assert result.returncode == 10 and "Traceback" not in result.stderr
    assert "error: pipeline.ossa: cannot fetch https://127.0.0.1:9/openstack/ossa: " in result.stderr
    assert "s3cret-token" not in result.stderr + result.stdout
    offline = invoke(layout, "advisories", "--offline")
    assert offline.returncode == 10 and "offline mode forbids fetching it" in offline.stderr
    with pytest.raises(ConfigError, match="is not a folder"):
        advisory_database.load(layout.project(ossa=str(layout.root / "no-such-folder")))


# --- a real image: the shipped keystone of 2025.2 -----------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_keystone(tmp_path_factory):
    """keystone 2025.2 built from the shipped configuration, with the advisory sources pointed at the snapshots."""
    from pipeline import build as build_stage
    from pipeline.core.git import configure
    from pipeline.core.releases import load_project
    from pipeline.core.settings import PROJECT_ROOT, Settings

    workdir = tmp_path_factory.mktemp("advisories") / "build"
    values = {"workdir": str(workdir), "cache_dir": str(workdir.parent / "cache"), "ossa": str(OSSA),
              "pypa_advisories": str(PYPA)}
    settings = Settings.from_mapping(values, root=PROJECT_ROOT)
    configure(settings.network.tool_env())
    project = load_project(settings)
    report = build_stage.build(project, "2025.2", ["keystone"])
    assert report.first_error() is None
    env = {f"INVOKE_PIPELINE_{k.upper()}": v for k, v in values.items()}
    return project, env


def run(env, *args):
    return invoke(None, *args, env=env)


@pytest.mark.docker
@pytest.mark.network
def test_shipped_keystone_2025_2(shipped_keystone):
    project, env = shipped_keystone
    table = run(env, "advisories", "--release", "2025.2", "--service", "keystone")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[2]: line for line in table.stdout.splitlines() if line.startswith("2025.2   keystone")}
    assert "fixed by patch" in rows["OSSA-2026-007"] and "0002-fix-ldap-enabled-setting-not-interpreted-as-boolean.patch" \
        in rows["OSSA-2026-007"]
    assert " affected " in rows["OSSA-2026-005"] and "https://review.opendev.org/983588" in rows["OSSA-2026-005"]
    assert "invoke patches.import --release 2025.2 --component keystone --change 983588" in table.stdout
    strict = run(env, "advisories", "--release", "2025.2", "--service", "keystone", "--strict", "--format", "json")
    assert strict.returncode == 64
    data = json.loads(strict.stdout)  # stdout is nothing but the JSON
    finding = next(f for f in data["findings"] if f["advisory"] == "OSSA-2026-005")
    assert (finding["status"], finding["version"], finding["cves"]) == ("affected", "28.0.0", ["CVE-2026-33551"])
    assert data["images"][0]["counts"]["fixed by patch"] == 1
    # The VEX says the same, strictly valid, and is written only when the findings change.
    vex = json.loads(project.layout.vex_file("2025.2", "keystone").read_text())
    states = {v["id"]: v["analysis"]["state"] for v in vex["vulnerabilities"]}
    assert states["OSSA-2026-007"] == "resolved_with_pedigree" and states["CVE-2026-33551"] == "in_triage"
    assert states["CVE-2026-44394"] == "resolved_with_pedigree"  # patch 0003's own CVE, in no advisory snapshot
    assert states["CVE-2012-5571"] == "not_affected"  # OSSA-2012-018, 'All versions' of 2012
    not_affected = next(v for v in vex["vulnerabilities"] if v["id"] == "CVE-2012-5571")
    assert not_affected["analysis"]["justification"] == "code_not_present"
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    path = project.layout.vex_file("2025.2", "keystone")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(path.read_text()) is None
    before = path.read_bytes()
    again = run(env, "vex", "--release", "2025.2", "--service", "keystone")
    assert "vex up to date" in again.stdout
    path.unlink()
    project.layout.vex_record("2025.2", "keystone").unlink()
    assert "vex written" in run(env, "vex", "--release", "2025.2", "--service", "keystone").stdout
    assert path.read_bytes() == before
    # The sources out of reach later: the document keeps what they said.
    gone = run({**env, "INVOKE_PIPELINE_OSSA": "https://127.0.0.1:9/openstack/ossa"}, "vex", "--release", "2025.2",
               "--service", "keystone")
    assert gone.returncode == 0 and "vex up to date" in gone.stdout and "no advisories read" in gone.stderr
    assert path.read_bytes() == before


@pytest.mark.docker
@pytest.mark.network
def test_an_override_that_leaves_the_range(layout, upstream, tmp_path):
    """Upstream pins urllib3 1.26.4, inside PYSEC-2021-108 (CVE-2021-33503, '<1.26.5'); the override pins 1.26.5."""
    from conftest import UPSTREAM_CONSTRAINTS, make_patch

    pins = tmp_path / "upstream-constraints"
    pins.mkdir()
    (pins / "2025.2.txt").write_text((UPSTREAM_CONSTRAINTS / "2025.2.txt").read_text().replace(
        "urllib3===1.26.20", "urllib3===1.26.4"))
    layout.settings_overrides.update(constraints_url=f"file://{pins}/{{release}}.txt", ossa=str(OSSA),
                                     pypa_advisories=str(PYPA))
    layout.release("2025.2", {"demo": "2.0.1"})
    run_git(upstream.path, "checkout", "-q", "2.0.1")
    layout.add_patch("demo", "2025.2", "0001-Use-urllib3.patch", make_patch(
        upstream.path, lambda r: (r / "requirements.txt").write_text("urllib3>=1.26\n"), "Use urllib3"))
    run_git(upstream.path, "checkout", "-q", "master")
    overrides = layout.root / "overrides" / "2025.2" / "constraints.txt"
    overrides.parent.mkdir(parents=True)
    overrides.write_text("# CVE-2021-33503: catastrophic backtracking in URL authority parsing; fixed in 1.26.5\n"
                         "urllib3===1.26.5\n")
    assert invoke(layout, "build", "--release", "2025.2", "--service", "demo").returncode == 0
    result = invoke(layout, "advisories", "--format", "json")
    assert result.returncode == 0, result.stderr
    finding = next(f for f in json.loads(result.stdout)["findings"] if f["advisory"] == "PYSEC-2021-108")
    assert (finding["package"], finding["version"], finding["status"]) == ("urllib3", "1.26.5", "fixed by override")
    assert finding["evidence"] == "overrides/2025.2/constraints.txt:2 pins 1.26.5 instead of upstream 1.26.4 (in '<1.26.5')"
    vex = json.loads((layout.root / "build/2025.2/demo/vex.cdx.json").read_text())
    assert next(v for v in vex["vulnerabilities"] if v["id"] == "CVE-2021-33503")["analysis"]["state"] == "resolved"
