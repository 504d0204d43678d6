"""Pure logic of the SBOM: trailers, patch classification, resolved issues."""

from __future__ import annotations

from pathlib import Path

from cyclonedx.model.component import PatchClassification
from cyclonedx.model.issue import IssueClassification

from pipeline.patches import parse_patch
from pipeline.sbom import patch_type, resolved_issues, trailers

ROOT = Path(__file__).resolve().parent.parent


def test_trailers_come_from_the_last_paragraph():
    message = "Subject\n\nBody mentions Closes-Bug: #1 inline.\n\nCloses-Bug: #2131652\nChange-Id: Iabc\n"
    assert trailers(message) == [("Closes-Bug", "#2131652"), ("Change-Id", "Iabc")]


def test_patch_type():
    assert patch_type("Fix\n\nChange-Id: I0123456789abcdef\n") is PatchClassification.BACKPORT
    assert patch_type("Fix\n\nbody\n(cherry picked from commit 0123456789abcdef0123456789abcdef01234567)\n") is PatchClassification.BACKPORT
    assert patch_type("Local hack\n\nNo upstream.\n") is PatchClassification.UNOFFICIAL
    assert patch_type("Fix\n\nChange-Id: I01\nPatch-Type: monkey\n") is PatchClassification.MONKEY


def test_resolved_issues_bugs_and_cves():
    issues = resolved_issues("Fix CVE-2026-23490 in decoder",
                             "Fix\n\nSee CVE-2026-23490 and CVE-2025-1234.\n\nCloses-Bug: #2131652\nPartial-Bug: 1999999\nRelated-Bug: #2131652\n")
    assert [(i.type, i.id) for i in issues] == [
        (IssueClassification.DEFECT, "2131652"), (IssueClassification.DEFECT, "1999999"),
        (IssueClassification.SECURITY, "CVE-2026-23490"), (IssueClassification.SECURITY, "CVE-2025-1234"),
    ]
    assert str(next(iter(issues[0].references))) == "https://bugs.launchpad.net/bugs/2131652"
    assert str(next(iter(issues[2].references))) == "https://nvd.nist.gov/vuln/detail/CVE-2026-23490"


def test_shipped_patches_are_backports_resolving_their_bugs():
    expected = {
        "0001-Fix-error-when-multiple-security-group-in-a-project-.patch": [("defect", "2105896")],
        "0001-rabbit-Fix-ignored-PreconditionFailed-error.patch": [("defect", "2131652")],
        "0001-Replace-the-random-library-with-secrets-in-oauth1.patch": [],
        "0002-fix-ldap-enabled-setting-not-interpreted-as-boolean.patch": [],
        "0003-Preserve-expires_at-when-rescoping-federated-tokens-.patch": [("security", "CVE-2026-44394")],
    }
    found = {}
    for path in sorted(ROOT.glob("patches/*/*/*.patch")):
        meta = parse_patch(path.read_text(), path.name)
        assert patch_type(meta.message) is PatchClassification.BACKPORT, path
        found[path.name] = [(i.type.value, i.id) for i in resolved_issues(meta.subject, meta.message)]
    assert found == expected
