"""Service locks on real upstream input: the shipped 2025.2 series, its upper-constraints and PyPI.

A service's lock is resolved again with a patched library's requirements
added once the library turns up in its closure, unless the first resolution
already meets every one of them; these tests compare the lock with what
that second resolution gives.  The locks of a release read the index once
(one resolution of them all fills uv's cache) and give the same locks.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import shipped

from pipeline.constraints import effective as constraints_stage
from pipeline.core import locks
from pipeline.image.dependencies import _already_met, release_locks, service_lock
from pipeline.image.wheels import Target, _run_uv, compile_lock, locked_files
from pipeline.patches import series

TARGET = Target("3.11", "x86_64", 36)


@pytest.fixture(scope="module")
def release(tmp_path_factory, cache):
    """The shipped configuration of 2025.2, with keystone, nova and oslo.messaging patched."""
    project = shipped(tmp_path_factory.mktemp("locks") / "build", cache)
    with locks.hold(project.layout.lock("2025.2"), "test"):
        trees = {t.component: t for t in series.patch(project, "2025.2", ("keystone", "nova", "oslo.messaging"), 3)}
        constraints_stage.build(project, "2025.2")
    return project, trees, project.layout.effective_constraints("2025.2").read_text()


def requirements(project, tree) -> Path:
    return project.layout.resolve(tree.tree) / "requirements.txt"


def runtime_requirements(project, service: str) -> Path:
    """What runtime.yaml adds to the service's image, as a requirements file of the test's own."""
    path = project.layout.workdir / f"oracle-runtime-{service}.txt"
    path.write_text("".join(f"{item.value}\n" for item in project.release("2025.2").runtime.of(service).python))
    return path


def second_round(project, trees, constraints: str, service: str) -> set[str]:
    """What the service's lock is with oslo.messaging's requirements resolved with its own (and with what
    runtime.yaml adds to the image)."""
    library = trees["oslo.messaging"]
    packages = compile_lock(project, [requirements(project, trees[service]), runtime_requirements(project, service),
                                      requirements(project, library)],
                            constraints + f"oslo.messaging=={library.source.version}\n", TARGET, service, "")
    return {f.pin for f in locked_files(packages, TARGET) if f.name not in ("oslo-messaging", service)}


@pytest.mark.network
@pytest.mark.parametrize("service", ["keystone", "nova"])
def test_lock_is_what_resolving_with_the_library_requirements_gives(release, service):
    project, trees, constraints = release
    lock = service_lock(project, "2025.2", trees[service], {"oslo.messaging": trees["oslo.messaging"]},
                        constraints, TARGET)
    assert lock.libraries == ("oslo.messaging",)
    pins = {f.pin for f in lock.files}
    assert pins == second_round(project, trees, constraints, service)
    # what runtime.yaml adds, at the upper-constraints' versions
    assert {"pymysql==1.1.1", "python-memcached==1.62", "pymemcache==4.0.0"} <= pins
    assert ({"python-ldap==3.4.4", "ldappool==3.0.0"} if service == "keystone" else {"libvirt-python==11.6.0"}) <= pins


@pytest.mark.network
def test_a_requirement_the_library_patch_adds_reaches_the_lock(release):
    project, trees, constraints = release
    path = requirements(project, trees["oslo.messaging"])
    original = path.read_text()
    try:
        path.write_text(original + "tabulate>=0.8.0 # MIT\n")  # pinned by upper-constraints; nothing keystone has needs it
        lock = service_lock(project, "2025.2", trees["keystone"], {"oslo.messaging": trees["oslo.messaging"]},
                            constraints, TARGET)
        pins = {f.pin for f in lock.files}
        assert any(pin.startswith("tabulate==") for pin in pins)
        assert pins == second_round(project, trees, constraints, "keystone")
    finally:
        path.write_text(original)  # the module's other tests lock the shipped tree


PACKAGES = [{"name": "PyRoute2", "version": "0.9.4"}, {"name": "oslo.config", "version": "10.0.0"}]


@pytest.mark.parametrize("lines, met", [
    ("# a comment\n\npyroute2>=0.7.3;sys_platform!='win32' # Apache-2.0 (+ dual licensed GPL2)\n", True),
    ("oslo_config>=9.0 # Apache-2.0\nwmi;sys_platform=='win32'\n", True),  # another spelling; not for Linux
    ("oslo.config>=10.1\n", False),  # the version chosen is too old
    ("oslo.config>=9.0\nsix>=1.0\n", False),  # a package not chosen
    ("oslo.config[fixtures]>=9.0\n", False),  # extras: not judged
    ("-r other-requirements.txt\n", False),
    ("pyroute2; python_full_version >= '3.11.4'\n", False),  # the image's patch level is unknown here
])
def test_already_met_judges_only_what_names_and_versions_decide(tmp_path, lines, met):
    path = tmp_path / "requirements.txt"
    path.write_text(lines)
    assert _already_met([path], PACKAGES, TARGET) is met


@pytest.mark.network
def test_a_lock_for_another_python_does_not_fetch_an_interpreter(release, tmp_path):
    """uv would fetch a Python 3.13 from GitHub for it (5 s of retries where that is out of reach), every lock."""
    project, _, _ = release
    (tmp_path / "requirements.txt").write_text("six\n")
    result = _run_uv(["pip", "compile", "--verbose", "--python-version", "3.13", "--python-platform",
                      TARGET.uv_platform, str(tmp_path / "requirements.txt")], project)
    assert result.returncode == 0, result.stderr
    assert "six==" in result.stdout
    assert "Fetching requested Python" not in result.stderr


class UvCalls:
    """Calls through to the real uv, noting for each run whether it was allowed the network."""

    def __init__(self, monkeypatch) -> None:
        from pipeline.image import wheels

        self.offline: list[bool] = []
        real = wheels._run_uv

        def run(args, project, offline=False):
            self.offline.append(offline)
            return real(args, project, offline)

        monkeypatch.setattr(wheels, "_run_uv", run)


@pytest.mark.network
def test_release_locks_read_the_index_once_and_each_lock_is_what_resolving_it_alone_gives(release, tmp_path,
                                                                                        monkeypatch):
    project, trees, constraints = release
    services = ["keystone", "nova"]
    for service in services:  # the module's other tests may have locked them already
        project.layout.stamp("lock", "2025.2", service).unlink(missing_ok=True)
    expected = {s: second_round(project, trees, constraints, s) for s in services}
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))  # nothing cached yet
    calls = UvCalls(monkeypatch)
    got = release_locks(project, "2025.2", [trees[s] for s in services], {"oslo.messaging": trees["oslo.messaging"]},
                        constraints, TARGET, 2)
    assert {s: {f.pin for f in lock.files} for s, lock in got.items()} == expected
    assert calls.offline[0] is False and all(calls.offline[1:]), calls.offline  # one online run fills the cache


@pytest.mark.network
def test_a_lock_from_the_cache_goes_online_when_a_page_is_not_there(release, tmp_path, monkeypatch):
    project, trees, constraints = release
    expected = compile_lock(project, [requirements(project, trees["keystone"])], constraints, TARGET, "keystone", "")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))  # empty: the offline run cannot resolve
    calls = UvCalls(monkeypatch)
    got = compile_lock(project, [requirements(project, trees["keystone"])], constraints, TARGET, "keystone", "",
                       from_cache=True)
    assert got == expected
    assert calls.offline == [True, False]
