"""A keystone-shaped upstream repository for the advisory and candidate tests (keystone's own history is not
reachable from here: no opendev).

Its shape is upstream's: ``28.0.0.0rc1`` on master, ``stable/2025.2`` cut
there, ``28.0.0`` tagged on it; fixes merged on master with ``Closes-Bug``
and a ``Change-Id``, then taken to the stable branches with
``git cherry-pick -x``; ``29.0.0.0rc1`` and ``stable/2026.1`` later.  The
fixes carry the Launchpad bugs and subjects of the real advisories in
``../shared/advisories/ossa`` (OSSA-2026-005: bug 2142138, "Enforce app cred
project boundary on EC2 credential paths", on stable/2025.2 as the -x
backport; OSSA-2025-002: bug 2119646), so the advisories match them as
they match upstream's.

    master:        rc1 -- early -- ec2-fix -- s3-fix -- cve-fix -- bug-fix -- feature -- conflicting -- 29.0.0.0rc1 -- later-fix
    stable/2025.2:  `-- early (-x) -- 28.0.0 -- ec2-fix (-x) -- bug-fix (-x)
    stable/2026.1:                                                                  `-- (cut at 29.0.0.0rc1)
"""

from __future__ import annotations

from pathlib import Path

from conftest import Upstream, git_env, run_git

EC2 = '''\
"""EC2 credentials."""


def create(user, project, app_cred=None):
    blob = {"access": user + project, "secret": "s"}
    return blob


def delete(user, credential):
    return True
'''
S3 = '''\
"""s3tokens and ec2tokens."""


def authenticate(signature):
    return signature is not None


def sign(data):
    return data
'''
LDAP = '''\
"""LDAP identity backend."""


def enabled(value, invert):
    if invert:
        return not value
    return value
'''
PYPROJECT = ('[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
             '[project]\nname = "keystone"\nversion = "{version}"\n[tool.setuptools]\npackages = ["keystone", '
             '"keystone.credential", "keystone.api", "keystone.identity"]\n')


def change_id(n: int) -> str:
    return f"I{n:040x}"


class KeystoneHistory(Upstream):
    """Upstream's helpers (write, commit, tag) for another history: not the demo's."""

    def __init__(self, base: Path) -> None:  # not super().__init__: that would make the demo repository
        self.name = "keystone"
        self.path = base / "keystone"
        self.path.mkdir(parents=True)
        self.day = 0
        run_git(self.path, "init", "-q")
        for rel, content in {"keystone/__init__.py": "", "keystone/credential/__init__.py": "",
                             "keystone/credential/ec2.py": EC2, "keystone/api/__init__.py": "",
                             "keystone/api/s3tokens.py": S3, "keystone/identity/__init__.py": "",
                             "keystone/identity/ldap.py": LDAP, "README.rst": "keystone\n",
                             "pyproject.toml": PYPROJECT.format(version="28.0.0")}.items():
            self.write(rel, content)
        self.commit("Initial import")
        self.tag("28.0.0.0rc1")
        run_git(self.path, "branch", "stable/2025.2")
        # master after the branch point, each fix merged there first
        self.write("keystone/credential/ec2.py", EC2.replace("    return True", "    return bool(user)"))
        self.early = self.commit(f"Refuse anonymous EC2 deletion\n\nCloses-Bug: #3000000\nChange-Id: {change_id(1)}")
        self.write("keystone/credential/ec2.py", self.read("keystone/credential/ec2.py").replace(
            '    blob = {"access": user + project, "secret": "s"}',
            '    if app_cred is not None and app_cred.get("project") != project:\n'
            '        raise PermissionError("application credential bound to another project")\n'
            '    blob = {"access": user + project, "secret": "s"}'))
        self.ec2_fix = self.commit(
            "Enforce app cred project boundary on EC2 credential paths\n\n"
            "A restricted application credential could create EC2 credentials for\nanother project.\n\n"
            f"Closes-Bug: #2142138\nChange-Id: {change_id(5)}")
        self.write("keystone/api/s3tokens.py", S3.replace("return signature is not None",
                                                          "return signature is not None and signature.service_user"))
        self.s3_fix = self.commit("Add service user authentication to ec2 and s3 endpoints\n\n"
                                  f"Closes-Bug: #2119646\nChange-Id: {change_id(2)}")
        self.write("keystone/api/limits.py", "MAX_SIGNATURE = 4096\n")
        self.cve_fix = self.commit(f"Limit the size of AWS signatures (CVE-2026-49999)\n\nChange-Id: {change_id(3)}")
        self.write("keystone/identity/ldap.py", LDAP.replace("def enabled", "def is_enabled") + "\n\nenabled = is_enabled\n")
        self.bug_fix = self.commit(f"Name the LDAP enabled helper\n\nCloses-Bug: #3000001\nChange-Id: {change_id(4)}")
        self.write("README.rst", "keystone, the identity service\n")
        self.feature = self.commit(f"Describe the service\n\nChange-Id: {change_id(6)}")
        self.write("keystone/credential/ec2.py", self.read("keystone/credential/ec2.py").replace(
            "bound to another project", "of another project"))
        self.conflicting = self.commit(f"Word the project boundary error\n\nCloses-Bug: #3000002\n"
                                       f"Change-Id: {change_id(7)}")
        self.write("pyproject.toml", PYPROJECT.format(version="29.0.0"))
        self.commit(f"Open 2026.1\n\nChange-Id: {change_id(8)}")
        self.tag("29.0.0.0rc1")
        run_git(self.path, "branch", "stable/2026.1")
        self.write("keystone/api/s3tokens.py", self.read("keystone/api/s3tokens.py").replace(
            "def sign(data):", "def sign(data, key=None):"))
        self.later_fix = self.commit(f"Let sign take a key\n\nCloses-Bug: #3000003\nChange-Id: {change_id(9)}")
        # stable/2025.2: a backport before 28.0.0 (in the ref), the release, then backports after it
        run_git(self.path, "checkout", "-q", "stable/2025.2")
        self.early_backport = self.pick(self.early)
        self.tag("28.0.0")
        self.ec2_backport = self.pick(self.ec2_fix)
        self.bug_backport = self.pick(self.bug_fix)
        run_git(self.path, "checkout", "-q", "master")

    def pick(self, sha: str) -> str:
        run_git(self.path, "cherry-pick", "-x", sha, env=git_env(self._date()))
        return self.head()
