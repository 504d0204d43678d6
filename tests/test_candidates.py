"""patches.candidates on a keystone-shaped history, and the loop an operator runs: advisory, candidate, patch, VEX.

keystone's own history is out of reach here (no opendev), so the history is
built the way upstream's is (``keystone_history.py``); the advisories are
the real snapshots.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import OSSA, PYPA, Layout, invoke, make_patch, run_git
from keystone_history import KeystoneHistory

pytestmark = pytest.mark.skipif(not OSSA.is_dir(), reason="the advisory snapshots are not on this machine")


@pytest.fixture
def keystone(tmp_path) -> KeystoneHistory:
    return KeystoneHistory(tmp_path / "upstream")


@pytest.fixture
def layout(tmp_path, keystone) -> Layout:
    """Release 2025.2 pins keystone 28.0.0 and carries two patches: the LDAP helper rename taken from a newer
    release without its metadata (the same diff as upstream's bug fix), and a fix naming OSSA-2026-007."""
    layout = Layout(tmp_path / "project", keystone.path.parent)
    layout.release("2025.2", {"keystone": "28.0.0"})
    layout.settings_overrides.update(ossa=str(OSSA), pypa_advisories=str(PYPA))
    run_git(keystone.path, "checkout", "-q", "28.0.0")
    ldap = keystone.path / "keystone" / "identity" / "ldap.py"
    layout.add_patch("keystone", "2025.2", "0001-Rename-the-LDAP-helper.patch", make_patch(
        keystone.path, lambda r: ldap.write_text(ldap.read_text().replace("def enabled", "def is_enabled")
                                                 + "\n\nenabled = is_enabled\n"),
        "Rename the LDAP helper\n\nTaken from the diff between two sdists."))
    run_git(keystone.path, "am", "-q", str(layout.root / "patches/keystone/2025.2/0001-Rename-the-LDAP-helper.patch"))
    layout.add_patch("keystone", "2025.2", "0002-Convert-enabled.patch", make_patch(
        keystone.path, lambda r: ldap.write_text(ldap.read_text() + "\nAS_BOOLEAN = True\n"),
        "Convert the LDAP enabled attribute to a boolean\n\nThis is the fix of OSSA-2026-007."))
    run_git(keystone.path, "checkout", "-q", "-f", "master")
    return layout


def candidates(layout: Layout) -> dict:
    result = invoke(layout, "patches.candidates", "--release", "2025.2", "--format", "json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_advisory_fixes_first_one_per_fix_each_checked(layout, keystone):
    data = candidates(layout)
    assert data["components"] == [{"release": "2025.2", "component": "keystone", "ref": "28.0.0", "version": "28.0.0",
                                   "history": True, "advisories": ["OSSA-2025-002", "OSSA-2026-005"]}]
    rows = [(c["kind"], c["fixes"], c["branch"], c["commit"], c["applies"]) for c in data["candidates"]]
    assert rows == [
        ("advisory fix", ["OSSA-2025-002"], "stable/2026.1", keystone.s3_fix, "applies"),
        # the -x backport on the release's own branch, not the master commit it names
        ("advisory fix", ["OSSA-2026-005"], "stable/2025.2", keystone.ec2_backport, "applies"),
        ("security", ["CVE-2026-49999"], "stable/2026.1", keystone.cve_fix, "applies"),
        ("bug fix", ["bug 3000002"], "stable/2026.1", keystone.conflicting, "conflicts in keystone/credential/ec2.py"),
        ("bug fix", ["bug 3000003"], "master", keystone.later_fix, "applies with a 3-way merge"),
    ]
    ec2 = data["candidates"][1]
    assert ec2["also"] == [f"stable/2026.1 {keystone.ec2_fix[:12]}"]
    assert ec2["command"] == f"invoke patches.new --release 2025.2 --component keystone --commit {keystone.ec2_backport[:12]}"
    # Not there: the early fix (its backport is in 28.0.0), the LDAP rename (the series has its diff: same
    # patch-id), OSSA-2026-007 (patch 0002 names it), and commits that name no bug, CVE or advisory.
    listed = {c["commit"] for c in data["candidates"]}
    assert not listed & {keystone.early, keystone.bug_fix, keystone.bug_backport, keystone.feature}
    table = invoke(layout, "patches.candidates", "--release", "2025.2", "--component", "keystone")
    assert table.returncode == 0
    assert f"2: invoke patches.new --release 2025.2 --component keystone --commit {keystone.ec2_backport[:12]}" in table.stdout


def test_the_candidate_taken_is_no_candidate_and_fixes_the_advisory(layout, keystone):
    added = invoke(layout, "patches.new", "--release", "2025.2", "--component", "keystone", "--commit",
                   keystone.ec2_backport[:12])
    assert added.returncode == 0, added.stderr
    patch = next((layout.root / "patches/keystone/2025.2").glob("0003-*.patch"))
    text = patch.read_text()
    assert "Closes-Bug: #2142138" in text and f"(cherry picked from commit {keystone.ec2_backport})" in text
    data = candidates(layout)
    assert data["components"][0]["advisories"] == ["OSSA-2025-002"]
    assert keystone.ec2_backport not in {c["commit"] for c in data["candidates"]}


@pytest.mark.network
def test_without_upstream_history_the_advisories_reviews(tmp_path):
    """The shipped configuration here: keystone 28.0.0 from its PyPI sdist, opendev out of reach."""
    env = {**os.environ, "INVOKE_PIPELINE_WORKDIR": str(tmp_path / "build"),
           "INVOKE_PIPELINE_CACHE_DIR": str(tmp_path / "cache"), "INVOKE_PIPELINE_OSSA": str(OSSA),
           "INVOKE_PIPELINE_PYPA_ADVISORIES": str(PYPA), "INVOKE_PIPELINE_GIT_BASE": str(tmp_path / "no-opendev")}
    result = invoke(None, "patches.candidates", "--release", "2025.2", "--component", "keystone", env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "keystone: no upstream git history" in result.stderr
    assert "keystone (2025.2): no upstream git history: commits could not be searched" in result.stdout
    assert "invoke patches.import --release 2025.2 --component keystone --change 983588" in result.stdout  # OSSA-2026-005
    assert "--change 966070" in result.stdout and "--change 982407" not in result.stdout  # 0002 fixes OSSA-2026-007


@pytest.mark.docker
@pytest.mark.network
def test_advisory_candidate_patch_vex(layout, keystone):
    """What the operator does: affected, take the candidate, rebuild: fixed by patch, and the VEX says so."""

    def assess() -> dict:
        result = invoke(layout, "advisories", "--release", "2025.2", "--format", "json")
        assert result.returncode == 0, result.stderr
        return {f["advisory"]: f for f in json.loads(result.stdout)["findings"]}

    def vex_state(cve: str) -> str:
        vex = json.loads((layout.root / "build/2025.2/keystone/vex.cdx.json").read_text())
        return next(v["analysis"]["state"] for v in vex["vulnerabilities"] if v["id"] == cve)

    assert invoke(layout, "build", "--release", "2025.2", "--service", "keystone").returncode == 0
    before = assess()
    assert before["OSSA-2026-005"]["status"] == "affected" and before["OSSA-2026-007"]["status"] == "fixed by patch"
    assert vex_state("CVE-2026-33551") == "in_triage"
    assert invoke(layout, "patches.new", "--release", "2025.2", "--component", "keystone", "--commit",
                  keystone.ec2_backport).returncode == 0
    assert invoke(layout, "build", "--release", "2025.2", "--service", "keystone").returncode == 0
    after = assess()
    fixed = after["OSSA-2026-005"]
    assert fixed["status"] == "fixed by patch" and fixed["evidence"].endswith("Closes-Bug #2142138, the advisory's bug")
    (patch,) = (layout.root / "patches/keystone/2025.2").glob("0003-Enforce-app-cred-project-boundary-on-EC2-*.patch")
    assert fixed["patches"] == [str(patch.relative_to(layout.root))]
    assert vex_state("CVE-2026-33551") == "resolved_with_pedigree"
    strict = invoke(layout, "advisories", "--strict")
    assert strict.returncode == 64 and "OSSA-2025-002" in strict.stdout  # still affected: nothing takes it yet
