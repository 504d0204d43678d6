"""`invoke smoke` on the shipped configuration: a real control plane, every process, python-openstackclient.

Each test runs the real CLI on the real engine, with a work directory and cache of its own; the
images the smoke needs are built from the shipped release by the smoke itself.  After every run
nothing labelled as the smoke's may be left on the engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import docker
import pytest
from conftest import REPO_ROOT, invoke, run_git

from pipeline.testing.smoke.plane import SMOKE, remove_leftovers

pytestmark = [pytest.mark.docker, pytest.mark.smoke]
CORE = ("nova", "neutron", "keystone", "glance", "cinder", "placement")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("smoke")
    return {**os.environ, "INVOKE_PIPELINE_WORKDIR": str(base / "build"), "INVOKE_PIPELINE_CACHE_DIR": str(base / "cache")}


@pytest.fixture(scope="module")
def engine():
    return docker.APIClient()


def leftovers(engine, run: str | None = None) -> list[str]:
    """What the smoke (or one run of it) has on the engine."""
    label = f"{SMOKE}={run}" if run else SMOKE
    found = [c["Names"][0] for c in engine.containers(all=True, filters={"label": label})]
    found += [v["Name"] for v in (engine.volumes(filters={"label": label}) or {}).get("Volumes") or []]
    return found + [n["Name"] for n in engine.networks(filters={"label": label})]


def runs_on_engine(engine) -> set[str]:
    return {c["Labels"][SMOKE] for c in engine.containers(all=True, filters={"label": SMOKE})}


def test_the_release_serves_and_leaves_nothing_behind(env, engine):
    # The six core services (and so CI's time does not grow with the release's services).
    core = [arg for service in CORE for arg in ("--service", service)]
    result = invoke(None, "smoke", "--release", "2025.2", *core, "--format", "json", env=env, timeout=3000)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)  # stdout is the JSON and nothing else
    assert report["ok"] and report["error"] is None and report["logs"] is None
    rows = {(r["service"], r["step"]): r for r in report["rows"]}
    assert {r["result"] for r in report["rows"]} == {"ok"}
    expected = [
        ("control plane", "MariaDB"), ("control plane", "RabbitMQ"), ("control plane", "memcached"),
        ("control plane", "OVN northbound/southbound"), ("keystone", "bootstrap"),
        ("keystone", "keystone-api answers on :5000"), ("keystone", "token issue"), ("keystone", "catalog list"),
        ("placement", "placement-api answers on :8778"), ("glance", "glance-api answers on :9292"),
        ("glance", "image create (qcow2)"), ("glance", "image save, same bytes"),
        ("nova", "nova-compute runs"), ("nova", "compute node is a resource provider"),
        ("nova", "server create --nic none --wait: ACTIVE"), ("nova", "server delete --wait"),
        ("neutron", "neutron-rpc-server runs"), ("neutron", "network create: an OVN logical switch"),
        ("neutron", "network delete: gone from OVN"), ("cinder", "cinder-volume runs"),
        ("cinder", "volume create: available"),
        ("keystone", "the running code is the patched code"), ("nova", "the running code is the patched code"),
    ]
    assert [key for key in expected if key not in rows] == []
    assert "keystone: 4 file(s)" in rows[("keystone", "the running code is the patched code")]["detail"]
    assert rows[("nova", "server create --nic none --wait: ACTIVE")]["detail"].endswith("ACTIVE on nova-compute")
    assert report["client"]["python-openstackclient"] == "8.2.0"  # the release's upper-constraints pin
    # one line per step on stderr, with its time, as it happens
    for service, step in expected:
        assert re.search(rf"^  {re.escape(service)}: {re.escape(step)}: ok \(\d+\.\d+s\)", result.stderr, re.M)
    junit = ET.parse(Path(env["INVOKE_PIPELINE_WORKDIR"]) / "smoke" / "2025.2" / "junit.xml").getroot()
    cases = list(junit.iter("testcase"))
    assert len(cases) == len(report["rows"]) and not [c for c in cases if c.find("failure") is not None]
    # every password is generated per run and masked: none reaches the output
    assert not re.search(r"openstack:[0-9a-f]{32}@|password = [0-9a-f]{32}", result.stdout + result.stderr)
    assert not leftovers(engine, _run_of(result.stderr))


def test_a_service_that_cannot_start_fails_the_smoke_naming_it(tmp_path, env, engine):
    """A patch that makes placement fail at import: exit 70, the process named with the end of its log."""
    project = tmp_path / "project"
    for folder in ("releases", "patches", "overrides", "deploy"):
        shutil.copytree(REPO_ROOT / folder, project / folder)
    run_env = {**env, "INVOKE_PIPELINE_ROOT": str(project)}
    assert invoke(None, "patch", "--release", "2025.2", "--component", "placement", env=run_env).returncode == 0
    tree = Path(env["INVOKE_PIPELINE_WORKDIR"]) / "patched" / "2025.2" / "placement"
    api = tree / "placement" / "wsgi" / "api.py"
    api.write_text(api.read_text() + '\nraise RuntimeError("smoke test: placement is broken")\n')
    run_git(tree, "commit", "-q", "-am", "Break placement's WSGI application on purpose")
    added = invoke(None, "patches.new", "--release", "2025.2", "--component", "placement", "--from-tree", env=run_env)
    assert added.returncode == 0, added.stderr
    result = invoke(None, "smoke", "--release", "2025.2", "--service", "placement", env=run_env, timeout=1800)
    assert result.returncode == 70, result.stderr[-3000:]
    assert "error: placement-api (placement)" in result.stderr
    assert "smoke test: placement is broken" in result.stderr  # the end of its log is shown
    assert "  placement: placement-api answers on :8778: FAILED" in result.stderr
    kept = Path(env["INVOKE_PIPELINE_WORKDIR"]) / "2025.2" / "smoke" / "logs" / "placement-api.log"
    assert "smoke test: placement is broken" in kept.read_text()
    assert re.search(r"^placement-api answers on :8778 +failed", result.stdout, re.M)
    assert re.search(r"^token issue +ok", result.stdout, re.M)  # keystone, which placement needs, served
    assert not leftovers(engine, _run_of(result.stderr))


def _run_of(stderr: str) -> str:
    """The run's id, as the smoke says it first."""
    match = re.search(r"^smoke 2025\.2: run ([0-9a-f]{8})", stderr, re.M)
    assert match, stderr[-2000:]
    return match.group(1)


def _start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(["invoke", "-r", str(REPO_ROOT), "smoke", "--release", "2025.2", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 900) -> str:
    """stderr read line by line until ``text`` shows (what came so far is returned)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    proc.kill()
    raise AssertionError(f"{text!r} never came:\n{''.join(seen)[-3000:]}")


def test_ctrl_c_tears_everything_down(env, engine):
    before = runs_on_engine(engine)
    proc = _start(env, "--service", "keystone")
    _wait_for(proc, "control plane: RabbitMQ: ok")
    mine = runs_on_engine(engine) - before
    assert len(mine) == 1
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert not leftovers(engine, mine.pop())


def test_a_killed_smoke_is_removed_by_the_next(env, engine):
    before = runs_on_engine(engine)
    proc = _start(env, "--service", "keystone")
    _wait_for(proc, "control plane: MariaDB: ok")
    mine = (runs_on_engine(engine) - before).pop()
    proc.kill()  # kill -9: no teardown
    proc.wait(60)
    assert leftovers(engine, mine)
    assert mine in remove_leftovers(engine)  # what the next smoke on this host does first
    assert not leftovers(engine, mine)


def test_two_smokes_at_once_on_one_engine(env, engine):
    first, second = _start(env, "--service", "keystone"), _start(env, "--service", "keystone")
    outs = [proc.communicate(timeout=1800) for proc in (first, second)]
    for proc, (out, err) in zip((first, second), outs, strict=False):
        assert proc.returncode == 0, err[-3000:]
        assert "token issue" in out
    runs = {_run_of(err) for _, err in outs}
    assert len(runs) == 2 and not [run for run in runs if leftovers(engine, run)]
